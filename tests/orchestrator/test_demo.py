"""``crossbank demo`` end to end, as a user runs it; and Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.local.supervisor import is_healthy

CROSSBANK = str(Path(sys.executable).parent / "crossbank")


def started_urls(output: str) -> list[str]:
    """The banks' and the store's URLs, from the demo's ``export ...`` line."""
    line = next(line for line in output.splitlines() if line.strip().startswith("export "))
    return re.findall(r"=(http://127\.0\.0\.1:\d+)", line)


def worker_pids(output: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"worker-\d+\s+pid (\d+)", output)]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run_demo(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``crossbank ARGS`` run to the end as a user runs it; its output, once it succeeded."""
    result = subprocess.run(
        [CROSSBANK, *args],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_demo_runs_every_outcome_and_stops_everything(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    out = run_demo(tmp_path, "demo", "--data", str(data))
    assert re.search(r"transfer tr-\w+: committed", out)
    assert re.search(r"transfer demo-comp-\d+: compensated \(account_closed\)", out)
    assert re.search(r"transfer tr-\w+: failed \(insufficient_funds\)", out)
    assert "SIGKILL worker-1" in out
    assert re.search(r"transfer crash-\d+: committed", out)
    assert "each op applied exactly once" in out
    assert out.count("audit: clean") == 2
    assert "total                                    1,310.00  (opening balances: 1,310.00)" in out
    assert out.rstrip().endswith("demo: done: every outcome as expected")
    for name in ("source.db", "target.db", "promises.db", "worker-1.log", "worker-2.log"):
        assert (data / name).exists(), name

    urls = started_urls(out)
    assert len(urls) == 3
    assert not any(is_healthy(f"{url}/health") for url in urls)
    assert not any(pid_alive(pid) for pid in worker_pids(out))


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [CROSSBANK, "demo", "--data", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert demo.stdout is not None
    seen = []
    try:
        for line in demo.stdout:
            seen.append(line)
            if line.startswith("== 2."):
                break
        urls = started_urls("".join(seen))
        assert all(is_healthy(f"{url}/health") for url in urls)
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output = "".join(seen) + rest
    assert demo.returncode == 130, output
    assert "stopping every process the demo started" in output
    deadline = time.monotonic() + 10
    while any(is_healthy(f"{url}/health") for url in urls):
        assert time.monotonic() < deadline, "a part the demo started is still answering"
        time.sleep(0.1)
    assert not any(pid_alive(pid) for pid in worker_pids(output))


def test_crash_demo_runs_with_tokens_exported_in_the_shell(tmp_path: Path) -> None:
    """A shell set up for compose has BANK_TOKEN and RESONATE_TOKEN; the demo's parts ignore them."""
    shell = {"BANK_TOKEN": "from-the-shell", "RESONATE_TOKEN": "from-the-shell"}
    out = run_demo(tmp_path, "crash-demo", "--data", str(tmp_path / "crash"), env=shell)
    assert "SIGKILL worker-1" in out
    assert re.search(r"transfer crash-\d+: committed", out)
    assert "each op applied exactly once" in out
    assert out.rstrip().endswith("crash-demo: done: every outcome as expected")


def test_crash_demo_over_tls_on_every_link(tmp_path: Path) -> None:
    """``crossbank crash-demo --tls``: the banks, the store and the console on https."""
    data = tmp_path / "crash"
    out = run_demo(tmp_path, "crash-demo", "--tls", "--data", str(data))
    export = next(line for line in out.splitlines() if line.strip().startswith("export "))
    assert len(re.findall(r"_URL=https://127\.0\.0\.1:\d+", export)) == 3, export
    assert f"TLS_CA_FILE={data / 'tls' / 'ca.pem'}" in export
    assert re.search(r"^console: https://127\.0\.0\.1:\d+", out, re.M)
    assert "SIGKILL worker-1" in out
    assert re.search(r"transfer crash-\d+: committed", out)
    assert "each op applied exactly once" in out
    assert out.rstrip().endswith("crash-demo: done: every outcome as expected")


def test_upgrade_demo_finishes_each_transfer_on_its_version(tmp_path: Path) -> None:
    """``crossbank upgrade-demo``: version-1 transfers held mid-credit finish on the old worker."""
    out = run_demo(tmp_path, "upgrade-demo", "--data", str(tmp_path / "upgrade"))

    assert "version 1: 2 unfinished transfer(s): keep workers that carry it" in out
    assert "version 1: no unfinished transfer: workers may stop carrying it" in out
    assert len(re.findall(r"v1-\d+-\d\s+ran on worker-2\n", out)) == 2
    assert len(re.findall(r"v2-\d+-\d\s+ran on worker-3\n", out)) == 2
    assert "unexpected" not in out
    assert "audit: clean" in out
    assert out.rstrip().endswith("upgrade-demo: done: every outcome as expected")
