"""The ``crossbank`` command: its parser (``main``), what each command does (``commands``)
and the text a person reads (``views``)."""
