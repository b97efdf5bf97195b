"""``python -m bench.compare``: the harness several times, over one or more checkouts, with the spread.

    .venv/bin/python -m bench.compare --tree before=/path/to/old/checkout --tree after=. \\
        --runs 3 --count 300 --concurrency 1,8,32 --systems baseline embedded "served, 1"
    .venv/bin/python -m bench.compare --tree inline=. --tree thread=. \\
        --env thread:COMMIT_IN_THREAD=1 --systems "served, 1"

On a shared machine one run is one sample (figures move by 20% between runs),
so a change is judged over several runs, with the trees alternating back to
back (before, after, before, after, ...) so that a burst of someone else's
load falls on both. Each run is ``python -m bench.harness --skip-recovery``
started in that tree with ``PYTHONPATH`` set to it, so every process of the
run (banks, store, workers) imports that tree's code, not the editable
install's; the harness is this tree's for every tree, so all are measured
alike. Prints one row per system, level and tree: the median of the runs and
their range, for transfers per second and for CPU ms per transfer (the
steadier figure) of the system's own processes and of the whole machine, and
the p50 latency; and the load average before each run. ``--env`` gives one
tree's runs a setting (the same tree may be given twice under two labels).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cell:
    """One system at one level in one tree: a figure per run."""

    throughput: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    own_cpu_ms: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    wrong: int = 0


def spread(values: Sequence[float], digits: int) -> str:
    """``median (min-max)``, or ``-`` for no values."""
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _tree(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--tree wants LABEL=PATH, got {text!r}")
    root = Path(path).resolve()
    if not (root / "bench" / "harness.py").is_file():
        raise argparse.ArgumentTypeError(f"{root} has no bench/harness.py")
    return label, root


def harness_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = [sys.executable, "-m", "bench.harness", "--skip-recovery", "--out", str(out)]
    command += ["--count", str(args.count), "--warmup", str(args.warmup)]
    command += ["--concurrency", ",".join(map(str, args.concurrency))]
    if args.systems:
        command += ["--systems", *args.systems]
    return command


def _setting(text: str) -> tuple[str, str, str]:
    label, sep, assignment = text.partition(":")
    name, eq, value = assignment.partition("=")
    if not sep or not eq or not label or not name:
        raise argparse.ArgumentTypeError(f"--env wants LABEL:NAME=VALUE, got {text!r}")
    return label, name, value


def harness_shim(scratch: Path) -> Path:
    """A directory holding only this ``bench`` package, to put before a tree on the path."""
    shim = scratch / "harness"
    shim.mkdir(exist_ok=True)
    link = shim / "bench"
    if not link.exists():
        link.symlink_to(Path(__file__).resolve().parent, target_is_directory=True)
    return shim


def run_once(
    args: argparse.Namespace, label: str, root: Path, out: Path, shim: Path
) -> list[dict[str, object]]:
    """One harness run in ``root`` with ``label``'s settings; its result rows (raw.json).

    The harness itself (``bench``) is this one, whichever tree runs: every
    tree is measured by the same code, and an older tree gets the figures it
    lacks (CPU of the system's own processes).
    """
    env = dict(os.environ, PYTHONPATH=f"{shim}{os.pathsep}{root}")
    env.update({name: value for lab, name, value in args.env if lab == label})
    subprocess.run(
        harness_command(args, out),
        cwd=shim,  # ``python -m`` puts the working directory first on the path
        env=env,
        check=True,
        stdout=None if args.verbose else subprocess.DEVNULL,
    )
    rows: list[dict[str, object]] = json.loads((out / "raw.json").read_text())["results"]
    return rows


def _levels(text: str) -> list[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive integers")
    return levels


def table(trees: Sequence[str], cells: dict[tuple[str, int, str], Cell]) -> str:
    lines = [
        "| system | concurrency | tree | transfers/s median (range) "
        "| CPU ms per transfer, its processes | CPU ms per transfer, whole machine | p50 ms |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    keys = sorted({(s, c) for s, c, _ in cells}, key=lambda k: (k[0], k[1]))
    for system, level in keys:
        for label in trees:
            cell = cells.get((system, level, label))
            if cell is None:
                continue
            wrong = f" **{cell.wrong} WRONG**" if cell.wrong else ""
            lines.append(
                f"| {system} | {level} | {label} | {spread(cell.throughput, 1)}{wrong} | "
                f"{spread(cell.own_cpu_ms, 2)} | {spread(cell.cpu_ms, 2)} | "
                f"{spread(cell.p50_ms, 1)} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument(
        "--tree", type=_tree, action="append", required=True, help="LABEL=PATH (repeatable)"
    )
    parser.add_argument(
        "--env",
        type=_setting,
        action="append",
        default=[],
        help="LABEL:NAME=VALUE, a setting for that tree's runs (every process it starts)",
    )
    parser.add_argument("--runs", type=int, default=3, help="harness runs per tree (3)")
    parser.add_argument("--count", type=int, default=300, help="transfers per level (300)")
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--concurrency", type=_levels, default=[1, 8, 32])
    parser.add_argument("--systems", nargs="*", default=["baseline", "embedded", "served, 1"])
    parser.add_argument("-v", "--verbose", action="store_true", help="show the harness's output")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.count < 1:
        parser.error("--runs and --count must be at least 1")
    labels = [label for label, _ in args.tree]
    cells: dict[tuple[str, int, str], Cell] = {}
    with tempfile.TemporaryDirectory(prefix="crossbank-compare-") as scratch:
        shim = harness_shim(Path(scratch))
        for run in range(args.runs):
            for label, root in args.tree:
                load = os.getloadavg()[0]
                out = Path(scratch) / f"{label}-{run}"
                rows = run_once(args, label, root, out, shim)
                print(f"run {run + 1} {label}: load average {load:.2f} before", flush=True)
                for row in rows:
                    key = (str(row["system"]), int(str(row["concurrency"])), label)
                    cell = cells.setdefault(key, Cell())
                    cell.throughput.append(float(str(row["throughput"])))
                    if row.get("cpu_ms") is not None:
                        cell.cpu_ms.append(float(str(row["cpu_ms"])))
                    if row.get("own_cpu_ms") is not None:
                        cell.own_cpu_ms.append(float(str(row["own_cpu_ms"])))
                    cell.p50_ms.append(float(str(row["p50_ms"])))
                    cell.wrong += int(str(row["wrong"]))
                    print(
                        f"  {key[0]:<28} c={key[1]:<3} {cell.throughput[-1]:7.1f}/s "
                        f"cpu {cell.cpu_ms[-1] if cell.cpu_ms else float('nan'):5.2f} ms, "
                        f"own {cell.own_cpu_ms[-1] if cell.own_cpu_ms else float('nan'):5.2f} ms",
                        flush=True,
                    )
    print()
    print(table(labels, cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
