"""The comparison's own arithmetic, its arguments, and the CPU it counts for a system's processes."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench import compare
from bench.driver import own_cpu_seconds


def test_spread_is_the_median_and_the_range() -> None:
    assert compare.spread([3.0, 1.0, 2.0], 1) == "2.0 (1.0-3.0)"
    assert compare.spread([7.25], 2) == "7.25"
    assert compare.spread([], 1) == "-"


def test_a_tree_and_a_setting_are_read_or_refused() -> None:
    root = Path(__file__).resolve().parents[2]
    assert compare._tree(f"after={root}") == ("after", root)
    with pytest.raises(argparse.ArgumentTypeError, match="LABEL=PATH"):
        compare._tree(str(root))
    with pytest.raises(argparse.ArgumentTypeError, match=r"no bench/harness\.py"):
        compare._tree("x=/")
    assert compare._setting("t4:BANK_THREADS=4") == ("t4", "BANK_THREADS", "4")
    with pytest.raises(argparse.ArgumentTypeError, match="LABEL:NAME=VALUE"):
        compare._setting("BANK_THREADS=4")


def test_the_cpu_of_a_child_process_is_counted() -> None:
    before = own_cpu_seconds()
    assert before is not None
    # The child burns 0.4 s of CPU, says so, and waits (alive) to be told to go.
    burn = (
        "import time\nend = time.process_time() + 0.4\n"
        "while time.process_time() < end: pass\nprint('burnt', flush=True)\ninput()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"burnt\n"
        during = own_cpu_seconds()
    finally:
        child.communicate(b"\n", timeout=10)
    assert during is not None
    assert during - before >= 0.35
