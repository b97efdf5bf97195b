"""The transfer saga, the bank clients, the worker and the ``crossbank`` CLI."""
