"""``python -m target_bank``: the target bank (port 5002 by default)."""

from bank.serve import main

if __name__ == "__main__":
    main("target", 5002)
