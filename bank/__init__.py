"""One bank service, deployed twice (``source_bank`` and ``target_bank``).

Each deployment is its own process with its own SQLite ledger; they share this
code, never state. ``bank.serve.main(name, default_port)`` is the entry point.
"""
