"""Write one run's figures as a markdown table, a PNG chart and raw JSON."""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.stats import RunStats


@dataclass
class RunReport:
    """Everything one harness run found, in the order it found it."""

    command: str
    started: str
    machine: str
    count: int
    concurrency: list[int]
    results: list[RunStats] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """System name -> why it did not run (missing package or binary, or a failure)."""
    recovery: list[tuple[str, str]] = field(default_factory=list)
    """(measurement, figure or TODO) rows for crossbank's failover and restart times."""
    notes: list[str] = field(default_factory=list)

    def baseline(self, concurrency: int) -> RunStats | None:
        return next(
            (
                r
                for r in self.results
                if r.system.startswith("baseline") and r.concurrency == concurrency
            ),
            None,
        )


def _ratio(stats: RunStats, base: RunStats | None) -> str:
    if base is None or base.throughput <= 0:
        return "n/a"
    return f"{stats.throughput / base.throughput:.0%}"


def _cpu(stats: RunStats) -> str:
    return "n/a" if stats.cpu_ms is None else f"{stats.cpu_ms:.1f}"


def _own_cpu(stats: RunStats) -> str:
    return "n/a" if stats.own_cpu_ms is None else f"{stats.own_cpu_ms:.1f}"


def _outcomes(stats: RunStats) -> str:
    parts = [f"{n} {status}" for status, n in sorted(stats.statuses.items())]
    if stats.wrong:
        parts.append(f"**{stats.wrong} WRONG**")
    return ", ".join(parts)


def markdown(report: RunReport) -> str:
    lines = [
        "# crossbank vs. durable-execution peers",
        "",
        f"Run {report.started} on {report.machine}: {report.count} transfers per system "
        f"and concurrency level (one in ten is reversed), the same two banks for all.",
        "",
        f"Command: `{report.command}`",
        "",
        "| system | concurrency | transfers/s | p50 ms | p99 ms | vs. baseline "
        "| CPU ms per transfer | of which its processes | outcomes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for stats in report.results:
        lines.append(
            f"| {stats.system} | {stats.concurrency} | {stats.throughput:.1f} | "
            f"{stats.p50_ms:.1f} | {stats.p99_ms:.1f} | "
            f"{_ratio(stats, report.baseline(stats.concurrency))} | {_cpu(stats)} | "
            f"{_own_cpu(stats)} | {_outcomes(stats)} |"
        )
    if report.skipped:
        lines += ["", "Did not run:", ""]
        lines += [f"- {name}: {why}" for name, why in report.skipped.items()]
    if report.recovery:
        lines += ["", "| crossbank recovery | figure |", "| --- | --- |"]
        lines += [f"| {what} | {figure} |" for what, figure in report.recovery]
    if report.notes:
        lines += ["", *[f"- {note}" for note in report.notes]]
    return "\n".join(lines) + "\n"


def chart(report: RunReport, path: Path) -> bool:
    """Throughput by concurrency, one line per system; False when matplotlib is missing."""
    try:  # an optional extra: imported by name so type checks pass without it
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return False
    systems: dict[str, list[RunStats]] = {}
    for stats in report.results:
        systems.setdefault(stats.system, []).append(stats)
    figure, axes = plt.subplots(figsize=(10, 5))
    for name, rows in systems.items():
        rows = sorted(rows, key=lambda r: r.concurrency)
        axes.plot(
            [r.concurrency for r in rows],
            [r.throughput for r in rows],
            marker="o",
            linestyle="--" if name.startswith("baseline") else "-",
            label=name,
        )
    axes.set_xscale("log", base=2)
    axes.set_xticks(report.concurrency, [str(c) for c in report.concurrency])
    axes.set_xlabel("concurrent transfers in flight")
    axes.set_ylabel("terminal transfers per second")
    axes.set_title(f"Transfer throughput ({report.count} transfers per point)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write(report: RunReport, out_dir: Path) -> list[Path]:
    """Write results.md, throughput.png (if possible) and raw.json into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.md"]
    written[0].write_text(markdown(report))
    if chart(report, out_dir / "throughput.png"):
        written.append(out_dir / "throughput.png")
    raw = out_dir / "raw.json"
    raw.write_text(json.dumps(asdict(report), indent=2))
    written.append(raw)
    return written


def print_row(stats: RunStats, base: RunStats | None) -> str:
    return (
        f"{stats.system:<30} c={stats.concurrency:<3} {stats.throughput:8.1f}/s "
        f"p50 {stats.p50_ms:8.1f} ms  p99 {stats.p99_ms:8.1f} ms  "
        f"vs baseline {_ratio(stats, base):>5}  cpu {_cpu(stats):>5} ms "
        f"(own {_own_cpu(stats):>5})  {_outcomes(stats)}"
    )


def load(raw: Path) -> RunReport:
    """Read back a ``raw.json`` written by :func:`write`."""
    data = json.loads(raw.read_text())
    data["results"] = [RunStats(**row) for row in data["results"]]
    data["recovery"] = [tuple(row) for row in data["recovery"]]
    return RunReport(**data)


if __name__ == "__main__":
    # ``python -m bench.report DIR``: redraw the table and chart from DIR/raw.json.
    import sys

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
    for written in write(load(out / "raw.json"), out):
        print(f"wrote {written}")
