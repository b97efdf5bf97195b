"""Worker and push channel lifetimes are read correctly from a worker's log."""

from __future__ import annotations

from pathlib import Path

from chaos.lifetimes import measure


def _line(second: int, text: str) -> str:
    return f"2026-12-01 10:{second // 60:02d}:{second % 60:02d},000 INFO {text}"


def test_lifetimes_end_at_a_restart_a_lost_channel_and_the_last_line(tmp_path: Path) -> None:
    lines = [
        _line(0, "orchestrator.worker: worker 11 ready: group=g"),
        _line(1, "orchestrator.push: SSE connection established: push channel open at u"),
        _line(101, "orchestrator.push: push channel lost (the store went away); reconnecting"),
        _line(103, "orchestrator.push: SSE connection established: push channel back at u"),
        _line(200, "orchestrator.worker: worker 12 ready: group=g"),  # killed, restarted
        _line(201, "orchestrator.push: SSE connection established: push channel open at u"),
        _line(500, "orchestrator.saga: transfer t finished: committed"),
    ]
    (tmp_path / "worker-0.log").write_text("\n".join(lines) + "\n")
    (tmp_path / "worker-1.log").write_text(
        _line(0, "orchestrator.worker: worker 13 ready: group=g") + "\n"
    )
    lifetimes = measure(tmp_path)
    assert lifetimes.longest_worker == "worker-0"
    assert lifetimes.longest_worker_s == 300  # from the restart at 200 s to the last line
    assert lifetimes.longest_channel_s == 299  # opened at 201 s, alive at the end
    assert lifetimes.channel_opens == 3
