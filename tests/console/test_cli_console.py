"""``crossbank console`` and the demo's console, as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.local.supervisor import free_port, is_healthy
from orchestrator.local.system import LocalSystem
from tests.console.conftest import call

CROSSBANK = str(Path(sys.executable).parent / "crossbank")


def read_until(process: subprocess.Popen[str], pattern: str, within: float = 120.0) -> str:
    """The process's output up to and including the first line matching ``pattern``."""
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + within
    for line in process.stdout:
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"ended before {pattern!r}:\n{''.join(seen)}")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return rest


def test_console_serves_the_system_the_environment_names(tmp_path: Path) -> None:
    with LocalSystem(tmp_path / "system", workers=0) as system:
        port = free_port()
        console = subprocess.Popen(
            [CROSSBANK, "console", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **system.child_env},
        )
        try:
            line = read_until(console, r"^console: ")
            assert f"console: http://127.0.0.1:{port}" in line
            assert is_healthy(f"http://127.0.0.1:{port}/health")
            deadline = time.monotonic() + 20
            while not (state := call(f"http://127.0.0.1:{port}/api/state")[1]["sections"]):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert state["banks"]["source"]["up"] is True
            assert state["workers"] is None  # not the demo: it knows no processes
        finally:
            stop(console)
        assert console.returncode == 0


def test_console_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with LocalSystem(tmp_path / "system", workers=0) as system:
        console = subprocess.Popen(
            [CROSSBANK, "console", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **system.child_env},
        )
        try:
            read_until(console, r"^console: ")
            console.terminate()
            assert console.wait(timeout=30) == 0
        finally:
            if console.poll() is None:
                console.kill()
                console.wait()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["console"], {"RESONATE_URL": "", "RESONATE_PG_DSN": ""}, "needs a served promise store"),
        (["console", "--port", "70000"], {}, "invalid port '70000'"),
        (
            ["console"],
            {"RESONATE_URL": "http://127.0.0.1:1", "CONSOLE_POLL_INTERVAL": "0"},
            "CONSOLE_POLL_INTERVAL",
        ),
    ],
    ids=["embedded-store", "bad-port", "bad-setting"],
)
def test_console_refuses_in_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [CROSSBANK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 or "usage:" in result.stderr


def test_keep_running_keeps_the_demo_and_its_console_up_until_ctrl_c(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [CROSSBANK, "crash-demo", "--keep-running", "--data", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        output = read_until(demo, r"everything stays up until Ctrl-C")
        address = re.search(r"^console: (http://127\.0\.0\.1:\d+)", output, re.M)
        assert address is not None, output
        assert "crash-demo: done: every outcome as expected" in output
        time.sleep(1.0)  # well past the scenes: still up
        # The demo's parts and console run with tokens made for the run.
        token = re.search(r"\bBANK_TOKEN=([0-9a-f]{32})\b", output)
        assert token is not None, output
        assert call(f"{address[1]}/api/state")[0] == 401
        link = re.search(r"open it logged in, once: (http://\S+/login\?code=\S+)$", output, re.M)
        assert link is not None, output
        bearer = {"Authorization": f"Bearer {token[1]}"}
        state = call(f"{address[1]}/api/state", headers=bearer)[1]["sections"]
        crash = [row for row in state["transfers"] if row["transfer_id"].startswith("crash-")]
        assert [row["status"] for row in crash] == ["committed"]
        assert state["totals"]["equal"] is True
        assert [w["alive"] for w in state["workers"]["workers"]] == [False, True]
        output += stop(demo)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0, output
    assert "stopping every process the demo started" in output
    assert not is_healthy(f"{address[1]}/health")


def test_the_measurement_runs_and_prints_every_figure() -> None:
    from orchestrator.console.measure import measure

    lines = measure("store", loads=1, updates=2, poll_interval=0.2)
    assert [line.split(" median ")[0].strip() for line in lines] == [
        "load: navigation to first state on screen",
        "load: navigation to DOMContentLoaded",
        "update: bank write answered to screen",
        "of which: until the next poll pushed it",
        "of which: push to screen",
        "transfer: root promise settled to screen",
    ]
