"""``python -m source_bank``: the source bank (port 5001 by default)."""

from bank.serve import main

if __name__ == "__main__":
    main("source", 5001)
