"""``python -m orchestrator.console``: the same as ``crossbank console``."""

import sys

from orchestrator.cli.main import main

sys.exit(main(["console", *sys.argv[1:]]))
