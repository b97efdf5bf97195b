"""``python -m target_bank``: the bank money arrives at (port 5002 by default)."""

from bank.serve import main

main("target", 5002)
