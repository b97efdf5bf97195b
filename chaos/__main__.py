"""``python -m chaos``: run a seeded chaos campaign (see chaos/README.md)."""

from chaos.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
