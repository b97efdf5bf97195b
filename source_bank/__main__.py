"""``python -m source_bank``: the bank money leaves from (port 5001 by default)."""

from bank.serve import main

main("source", 5001)
