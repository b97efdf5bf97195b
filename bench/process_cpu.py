"""CPU time by process for a command and everything it starts: where a benchmark's CPU went.

    python -m bench.process_cpu [--per N] -- COMMAND [ARGS...]

Runs COMMAND, samples ``/proc`` every 0.2 s for it and its descendants, and
when it exits prints each process's user and system CPU seconds (the last
sample seen; a process that lives under 0.2 s may be missed) and, with
``--per N``, milliseconds per unit of work (say, per transfer). The figures
include each process's start-up, so run enough work to make that small.

A Postgres server is many processes (the postmaster, one backend per
connection, its background workers), and a backend renames itself as it
works: they are summed into one row, ``Postgres server (N processes)``.

Linux only (it reads ``/proc``). The harness's "CPU ms per transfer" column
says how much a transfer costs the machine; this says which process spent it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
SAMPLE_SECONDS = 0.2


@dataclass
class ProcessCpu:
    pid: int
    command: str
    user_s: float
    system_s: float

    @property
    def total_s(self) -> float:
        return self.user_s + self.system_s


def read_stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, user seconds, system seconds) of ``pid``, or None if it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), int(fields[11]) / ticks, int(fields[12]) / ticks


def _command(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def sample(root: int, seen: dict[int, ProcessCpu]) -> None:
    """Update ``seen`` with every live process descended from ``root`` (``root`` included)."""
    parents: dict[int, int] = {}
    times: dict[int, tuple[float, float]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if stat is not None:
            parents[int(entry.name)] = stat[0]
            times[int(entry.name)] = (stat[1], stat[2])
    for pid, (user, system) in times.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor != root:
            continue
        known = seen.get(pid)
        if known is None:
            seen[pid] = ProcessCpu(pid, _command(pid), user, system)
        else:
            known.user_s, known.system_s = user, system


def run(command: Sequence[str]) -> tuple[int, list[ProcessCpu]]:
    """Run ``command`` to completion; its exit code and its processes' CPU, busiest first."""
    seen: dict[int, ProcessCpu] = {}
    child = subprocess.Popen(command)
    while child.poll() is None:
        sample(child.pid, seen)
        time.sleep(SAMPLE_SECONDS)
    return child.returncode, sorted(seen.values(), key=lambda p: p.total_s, reverse=True)


POSTGRES_ROW = "Postgres server"


def _is_postgres(command: str) -> bool:
    """The postmaster (``.../postgres -D ...``) or one of its children (``postgres: ...``)."""
    first = command.split(" ", 1)[0]
    return first == "postgres:" or Path(first).name == "postgres"


def grouped(processes: Sequence[ProcessCpu]) -> list[ProcessCpu]:
    """``processes`` with every Postgres server process summed into one row, busiest first."""
    postgres = [p for p in processes if _is_postgres(p.command)]
    rest = [p for p in processes if not _is_postgres(p.command)]
    if postgres:
        rest.append(
            ProcessCpu(
                postgres[0].pid,
                f"{POSTGRES_ROW} ({len(postgres)} processes)",
                sum(p.user_s for p in postgres),
                sum(p.system_s for p in postgres),
            )
        )
    return sorted(rest, key=lambda p: p.total_s, reverse=True)


def table(processes: Sequence[ProcessCpu], per: int | None) -> str:
    """A markdown table, busiest process first, with a total row."""
    processes = grouped(processes)
    lines = [
        "| process | user s | system s |" + (f" ms per unit (/{per}) |" if per else ""),
        "| --- | ---: | ---: |" + (" ---: |" if per else ""),
    ]

    def row(name: str, user: float, system: float) -> str:
        per_cell = f" {(user + system) * 1000 / per:.2f} |" if per else ""
        return f"| {name} | {user:.1f} | {system:.1f} |{per_cell}"

    for p in processes:
        if p.total_s >= 0.05:
            lines.append(row(f"`{p.command[:90]}`", p.user_s, p.system_s))
    lines.append(row("all", sum(p.user_s for p in processes), sum(p.system_s for p in processes)))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.process_cpu", description=__doc__)
    parser.add_argument("--per", type=int, help="units of work the command does (for ms per unit)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    if args.per is not None and args.per < 1:
        parser.error("--per must be a positive number of units")
    if not PROC.is_dir():
        parser.error("this needs Linux's /proc")
    code, processes = run(command)
    print(table(processes, args.per))
    return code


if __name__ == "__main__":
    sys.exit(main())
