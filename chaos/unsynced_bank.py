"""``python -m chaos.unsynced_bank ROLE``: a bank whose ledger never syncs. A control, never a bank.

The same bank as ``python -m {ROLE}_bank`` (same settings, same port
default), with SQLite's ``synchronous=OFF``: a commit is acknowledged once
it is in the page cache, and nothing ever asks the disk to keep it. A power
cut (:mod:`chaos.powercut`) must then lose entries this bank acknowledged,
and a power-cut campaign run with it must report them; if it did not, the
campaign could not tell a synced write from one that was only written.
"""

from __future__ import annotations

import sys

from bank import ledger
from bank.serve import main

_DEFAULT_PORTS = {"source": 5001, "target": 5002}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in _DEFAULT_PORTS:
        print("usage: python -m chaos.unsynced_bank source|target", file=sys.stderr)
        raise SystemExit(2)
    ledger.SYNCHRONOUS = "OFF"
    main(sys.argv[1], _DEFAULT_PORTS[sys.argv[1]])
