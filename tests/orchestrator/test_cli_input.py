"""``crossbank transfer`` refuses bad input with one line and exit 2, and starts nothing.

Every case runs against real banks, the served promise store and a worker, and
then checks that neither ledger nor the store changed. One case of each kind
runs the real command as a subprocess; the rest call the same ``main`` in this
process (``cli_main``), which keeps the module fast on a small machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.main import main
from orchestrator.local.supervisor import free_port
from tests.orchestrator.cluster import Cluster

ACCOUNTS = {"in-alice": 10_000}, {"in-carol": 0, "in-closed": 0}


def run_cli(
    cluster: Cluster, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m orchestrator ARGS`` with the cluster's client environment (plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env={**os.environ, **cluster.worker_env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_main(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``crossbank ARGS`` run in this process, with the same environment as :func:`run_cli`."""
    with monkeypatch.context() as patch:
        for name, value in {**cluster.worker_env, **env}.items():
            patch.setenv(name, value)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The refusal: exit 2, nothing on stdout, exactly one line on stderr (no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crossbank: error: ")
    return lines[0]


@pytest.fixture
def seeded(cluster: Cluster) -> Cluster:
    source, target = ACCOUNTS
    asyncio.run(cluster.seed(source, target, closed=("in-closed",)))
    return cluster


def snapshot(cluster: Cluster) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Every balance and every entry of both banks."""
    return asyncio.run(cluster.balances()), asyncio.run(cluster.entries(""))


def assert_nothing_started(
    cluster: Cluster, before: tuple[dict[str, int], list[dict[str, Any]]], transfer_id: str
) -> None:
    assert snapshot(cluster) == before
    assert asyncio.run(cluster.record(transfer_id)) is None


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("12.345", "at most two decimal places"),
        ("-5", "more than zero"),
        ("1e3", "exponents"),
        ("abc", "expected a decimal number"),
        ("0", "more than zero"),
        ("1000000000.01", "cap"),
    ],
)
def test_malformed_amount(
    seeded: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    amount: str,
    reason: str,
) -> None:
    before = snapshot(seeded)
    tid = f"in-amount-{abs(hash(amount))}"
    argv = ("transfer", "--from", "in-alice", "--to", "in-carol", "--amount", amount, "--id", tid)
    result = cli_main(seeded, capsys, monkeypatch, *argv)
    line = one_line_error(result)
    assert reason in line
    assert repr(amount) in line
    assert_nothing_started(seeded, before, tid)


def test_malformed_amount_from_the_real_command(seeded: Cluster) -> None:
    before = snapshot(seeded)
    argv = ("--from", "in-alice", "--to", "in-carol", "--amount", "12.345", "--id", "in-real")
    line = one_line_error(run_cli(seeded, "transfer", *argv))
    assert line == "crossbank: error: invalid amount '12.345': at most two decimal places (cents)"
    assert_nothing_started(seeded, before, "in-real")


def test_same_source_and_target(
    seeded: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(seeded)
    result = cli_main(
        seeded,
        capsys,
        monkeypatch,
        "transfer",
        "--from",
        "in-alice",
        "--to",
        "in-alice",
        "--amount",
        "1",
        "--id",
        "in-same",
    )
    assert "same account" in one_line_error(result)
    assert_nothing_started(seeded, before, "in-same")


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ("in-nobody", "in-carol", "account 'in-nobody' does not exist on the source bank"),
        ("in-alice", "in-nobody", "account 'in-nobody' does not exist on the target bank"),
        ("in-carol", "in-alice", "account 'in-carol' does not exist on the source bank"),
        ("in-alice", "in-closed", "account 'in-closed' on the target bank is closed"),
    ],
)
def test_unknown_or_closed_account(
    seeded: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    target: str,
    expected: str,
) -> None:
    before = snapshot(seeded)
    tid = f"in-acct-{source}-{target}"
    argv = ("transfer", "--from", source, "--to", target, "--amount", "1", "--id", tid)
    assert one_line_error(cli_main(seeded, capsys, monkeypatch, *argv)).endswith(expected)
    assert_nothing_started(seeded, before, tid)


def test_unknown_account_from_the_real_command(seeded: Cluster) -> None:
    before = snapshot(seeded)
    argv = ("--from", "in-alice", "--to", "in-ghost", "--amount", "1", "--id", "in-ghost")
    line = one_line_error(run_cli(seeded, "transfer", *argv))
    assert line == "crossbank: error: account 'in-ghost' does not exist on the target bank"
    assert_nothing_started(seeded, before, "in-ghost")


@pytest.mark.parametrize(
    ("bank", "variable"), [("source", "SOURCE_BANK_URL"), ("target", "TARGET_BANK_URL")]
)
def test_unreachable_bank(seeded: Cluster, bank: str, variable: str) -> None:
    before = snapshot(seeded)
    nowhere = f"http://127.0.0.1:{free_port()}"
    tid = f"in-down-{bank}"
    result = run_cli(
        seeded,
        "transfer",
        "--from",
        "in-alice",
        "--to",
        "in-carol",
        "--amount",
        "1",
        "--id",
        tid,
        env={variable: nowhere},
    )
    assert one_line_error(result).endswith(f"{bank} bank not reachable at {nowhere} ({variable})")
    assert_nothing_started(seeded, before, tid)


def test_unreachable_store(seeded: Cluster) -> None:
    before = snapshot(seeded)
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        seeded,
        "transfer",
        "--from",
        "in-alice",
        "--to",
        "in-carol",
        "--amount",
        "1",
        "--id",
        "in-store-down",
        env={"RESONATE_URL": nowhere},
    )
    assert one_line_error(result).endswith(
        f"promise store not reachable at {nowhere} (RESONATE_URL)"
    )
    assert_nothing_started(seeded, before, "in-store-down")


def test_bad_setting_names_the_variable(
    seeded: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli_main(seeded, capsys, monkeypatch, "balances", BANK_TIMEOUT="soon")
    assert "BANK_TIMEOUT" in one_line_error(result)


def test_other_commands_name_an_unreachable_bank(
    seeded: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    for args in (("balances",), ("audit",), ("accounts", "seed")):
        result = cli_main(seeded, capsys, monkeypatch, *args, TARGET_BANK_URL=nowhere)
        assert one_line_error(result).endswith(
            f"target bank not reachable at {nowhere} (TARGET_BANK_URL)"
        ), args


def test_no_wait_needs_a_served_store(
    seeded: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the embedded store the CLI process itself runs the saga, so it cannot leave early."""
    before = snapshot(seeded)
    argv = ("transfer", "--from", "in-alice", "--to", "in-carol", "--amount", "1", "--no-wait")
    result = cli_main(seeded, capsys, monkeypatch, *argv, "--id", "in-nowait", RESONATE_URL="")
    assert "--no-wait needs a served promise store (RESONATE_URL)" in one_line_error(result)
    assert_nothing_started(seeded, before, "in-nowait")


def test_json_flag_before_or_after_the_command(
    seeded: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = cli_main(seeded, capsys, monkeypatch, "--json", "balances")
    after = cli_main(seeded, capsys, monkeypatch, "balances", "--json")
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)
    plain = cli_main(seeded, capsys, monkeypatch, "balances")
    assert plain.stdout.startswith("bank ")


class _MisbehavingBank(BaseHTTPRequestHandler):
    """Answers every account list with a balance in floats: no user input can fix that."""

    def do_GET(self) -> None:
        body = json.dumps(
            {"accounts": [{"account_id": "x", "balance": 1.5, "status": "open"}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def misbehaving_bank() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MisbehavingBank)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run_alone(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m orchestrator ARGS`` with nothing running: banks nowhere, an embedded store."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    base = {"SOURCE_BANK_URL": nowhere, "TARGET_BANK_URL": nowhere, "RESONATE_URL": ""}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env={**os.environ, **base, "STORE_PATH": str(tmp_path / "promises.db"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bug_is_not_reported_as_a_refusal(tmp_path: Path) -> None:
    """A ValueError from a bug (here: a bank that answers a float) is exit 3, not "refused"."""
    with misbehaving_bank() as url:
        banks = {"SOURCE_BANK_URL": url, "TARGET_BANK_URL": url}
        result = run_alone("balances", tmp_path=tmp_path, **banks)
        debug = run_alone("balances", "--debug", tmp_path=tmp_path, **banks)
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert result.stderr.strip().splitlines() == [
        "crossbank: error: unexpected error: ValueError: Unknown format code 'd' for object "
        "of type 'float' (run with --debug for the traceback)"
    ]
    assert debug.returncode == 3
    assert "Traceback (most recent call last)" in debug.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [("BANK_TIMEOUT", "soon"), ("STEP_ATTEMPTS", "\u00b2"), ("RESONATE_URL", "http://")],
)
def test_a_bad_setting_is_refused_from_the_real_command(
    tmp_path: Path, setting: str, value: str
) -> None:
    line = one_line_error(run_alone("balances", tmp_path=tmp_path, **{setting: value}))
    assert line.startswith(f"crossbank: error: {setting} must be ")


def test_a_bad_transfer_id_is_refused_from_the_real_command(tmp_path: Path) -> None:
    argv = ("transfer", "--from", "a", "--to", "b", "--amount", "1", "--id", "no spaces")
    line = one_line_error(run_alone(*argv, tmp_path=tmp_path))
    assert line.startswith("crossbank: error: transfer id 'no spaces' must be 1-100 letters")
    assert not (tmp_path / "promises.db").exists()


def test_the_largest_amount_the_cli_takes_moves_for_real(seeded: Cluster) -> None:
    """The CLI's cap (an opening balance and a transfer) is one the banks accept."""
    top = "1000000000.00"
    before = asyncio.run(seeded.balances())
    opened = run_cli(seeded, "accounts", "open", "in-rich", "--bank", "source", "--opening", top)
    assert opened.returncode == 0, opened.stderr
    argv = ("--from", "in-rich", "--to", "in-carol", "--amount", top, "--id", "in-top", "--json")
    moved = run_cli(seeded, "transfer", *argv)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["status"] == "committed"
    after = asyncio.run(seeded.balances())
    assert after["source:in-rich"] == 0
    assert after["target:in-carol"] - before["target:in-carol"] == 100_000_000_000
