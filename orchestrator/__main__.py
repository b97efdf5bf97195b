"""``python -m orchestrator COMMAND``: the same as the ``crossbank`` command."""

import sys

from orchestrator.cli.main import main

sys.exit(main())
