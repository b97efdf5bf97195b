"""How long worker processes and their push channels lived, read from the workers' logs.

A long campaign is meant to let timers, leases and push channels outlive
their natural lifetimes; this says whether they did. A worker process lives
from its ``ready`` line to the next one (it was killed and restarted in
between; the downtime counts in, at most a few seconds) or to its last line.
A push channel lives from an ``SSE connection established`` line to the next
line saying it was lost or reopened on purpose, or to the process's end.
worker-0 runs under a stepped clock, so its stamps may be off by the steps
in force (seconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestrator.push import OPENED_LOG

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_READY = re.compile(r"orchestrator\.worker: worker \d+ ready")
_CHANNEL_ENDS = ("push channel lost", "reconnecting on purpose")


@dataclass(frozen=True)
class Lifetimes:
    """The longest span (seconds) of a worker process and of a push channel, and whose."""

    longest_worker_s: float
    longest_worker: str | None
    longest_channel_s: float
    longest_channel: str | None
    channel_opens: int

    def describe(self) -> str:
        return (
            f"longest-lived worker process {self.longest_worker_s:.0f}s ({self.longest_worker}), "
            f"longest push channel {self.longest_channel_s:.0f}s ({self.longest_channel}), "
            f"{self.channel_opens} push channel opens"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "longest_worker_s": round(self.longest_worker_s, 1),
            "longest_worker": self.longest_worker,
            "longest_channel_s": round(self.longest_channel_s, 1),
            "longest_channel": self.longest_channel,
            "channel_opens": self.channel_opens,
        }


def _stamped(path: Path) -> list[tuple[float, str]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        match = _STAMP.match(line)
        if match:
            moment = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            lines.append((moment, line))
    return lines


def spans(lines: list[tuple[float, str]]) -> tuple[list[float], list[float]]:
    """(process lifetimes, push channel lifetimes) in one worker's log lines."""
    processes: list[float] = []
    channels: list[float] = []
    started = opened = None
    for moment, line in lines:
        if _READY.search(line):
            if started is not None:
                processes.append(moment - started)
            if opened is not None:
                channels.append(moment - opened)
            started, opened = moment, None
        elif OPENED_LOG in line:
            if opened is not None:
                channels.append(moment - opened)
            opened = moment
        elif opened is not None and any(end in line for end in _CHANNEL_ENDS):
            channels.append(moment - opened)
            opened = None
    if lines:
        last = lines[-1][0]
        if started is not None:
            processes.append(last - started)
        if opened is not None:
            channels.append(last - opened)
    return processes, channels


def measure(log_dir: Path) -> Lifetimes:
    """The longest worker process and push channel over every ``worker-*.log`` in ``log_dir``."""
    best_worker: tuple[float, str | None] = (0.0, None)
    best_channel: tuple[float, str | None] = (0.0, None)
    opens = 0
    for path in sorted(log_dir.glob("worker-*.log")):
        lines = _stamped(path)
        processes, channels = spans(lines)
        opens += sum(1 for _, line in lines if OPENED_LOG in line)
        name = path.stem
        best_worker = max(best_worker, (max(processes, default=0.0), name), key=lambda b: b[0])
        best_channel = max(best_channel, (max(channels, default=0.0), name), key=lambda b: b[0])
    return Lifetimes(best_worker[0], best_worker[1], best_channel[0], best_channel[1], opens)
