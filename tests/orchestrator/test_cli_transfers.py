"""``crossbank transfer``, ``status``, ``balances`` and ``accounts`` as a script uses them (``--json``).

The commands run as real subprocesses against real banks, the served promise
store and a worker; the assertions read the ledgers directly, not the CLI's
own account of them.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from orchestrator.local.supervisor import ManagedProcess, worker_ready_log
from orchestrator.local.system import POSTGRES_BACKEND
from orchestrator.transfers import TransferRequest, start_transfer
from tests.orchestrator.cluster import Cluster, wait_for_hold
from tests.orchestrator.test_cli_input import run_cli

#: Each command runs on crossbank's promise store and on Resonate on Postgres (conftest.py).
ON_EVERY_BACKEND = True


def cli_json(cluster: Cluster, *args: str, expect: int = 0) -> Any:
    result = run_cli(cluster, *args, "--json")
    assert result.returncode == expect, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_committed_transfer(cluster: Cluster) -> None:
    asyncio.run(cluster.seed({"tc-alice": 10_000}, {"tc-carol": 0}))
    argv = ("--from", "tc-alice", "--to", "tc-carol", "--amount", "12.50", "--id", "tc-commit")
    result = cli_json(cluster, "transfer", *argv)
    assert result["status"] == "committed"
    assert result["transfer_id"] == "tc-commit"
    assert result["amount"] == 1250
    balances = asyncio.run(cluster.balances())
    assert balances["source:tc-alice"] == 10_000 - 1250
    assert balances["target:tc-carol"] == 1250

    # The same id again re-attaches: the same answer, and nothing moves twice.
    again = cli_json(cluster, "transfer", *argv)
    assert again == result
    assert len(asyncio.run(cluster.entries("tc-commit-"))) == 2
    assert asyncio.run(cluster.balances())["target:tc-carol"] == 1250


def test_same_id_with_other_parameters_is_refused(cluster: Cluster) -> None:
    asyncio.run(cluster.seed({"tx-alice": 10_000}, {"tx-carol": 0}))
    cli_json(
        cluster,
        "transfer",
        "--from",
        "tx-alice",
        "--to",
        "tx-carol",
        "--amount",
        "1",
        "--id",
        "tx-1",
    )
    argv = ("--from", "tx-alice", "--to", "tx-carol", "--amount", "2", "--id", "tx-1")
    result = run_cli(cluster, "transfer", *argv)
    assert result.returncode == 2
    assert "tx-1 already exists with different parameters" in result.stderr
    assert len(asyncio.run(cluster.entries("tx-1-"))) == 2


def test_failed_transfer_moves_nothing(cluster: Cluster) -> None:
    asyncio.run(cluster.seed({"tf-poor": 500}, {"tf-carol": 0}))
    argv = ("--from", "tf-poor", "--to", "tf-carol", "--amount", "5.01", "--id", "tf-1")
    result = cli_json(cluster, "transfer", *argv, expect=1)
    assert result["status"] == "failed"
    assert result["reason"] == "insufficient_funds"
    assert asyncio.run(cluster.entries("tf-1-")) == []
    balances = asyncio.run(cluster.balances())
    assert (balances["source:tf-poor"], balances["target:tf-carol"]) == (500, 0)


def test_compensated_when_the_target_account_closes_mid_transfer(cluster: Cluster) -> None:
    """Validation needs the account open, so it closes while the credit is held at the bank."""
    asyncio.run(cluster.seed({"tp-bob": 9_000}, {"tp-frank": 0}))
    tid = "tp-1"
    argv = ("--from", "tp-bob", "--to", "tp-frank", "--amount", "40", "--id", tid)

    async def hold_credit() -> None:
        async with cluster.banks() as (_, target):
            await target.set_faults([{"action": "hold_before", "op_id": f"{tid}-credit"}])

    async def held_then_release() -> None:
        async with cluster.banks() as (_, target):
            await wait_for_hold(target, f"{tid}-credit", "before")
            closed = cli_json(cluster, "accounts", "close", "tp-frank", "--bank", "target")
            assert closed["status"] == "closed"
            await target.clear_faults()

    asyncio.run(hold_credit())
    assert cli_json(cluster, "transfer", *argv, "--no-wait") == {
        "transfer_id": tid,
        "status": "started",
    }
    asyncio.run(held_then_release())
    result = cli_json(cluster, "transfer", *argv, expect=1)
    assert result["status"] == "compensated"
    assert result["reason"] == "account_closed"
    kinds = sorted(entry["kind"] for entry in asyncio.run(cluster.entries(f"{tid}-")))
    assert kinds == ["debit", "reversal"]
    assert asyncio.run(cluster.balances())["source:tp-bob"] == 9_000

    status = cli_json(cluster, "status", tid)
    assert status["status"] == "compensated"
    assert [step["value"]["step"] for step in status["steps"]] == [
        "debit",
        "credit",
        "compensating",
        "reversal",
    ]
    assert (status["ledger"]["credit"] or {}).get("state") != "applied"
    assert status["ledger"]["reversal"]["state"] == "applied"


def test_no_wait_then_status(cluster: Cluster, backend: str) -> None:
    asyncio.run(cluster.seed({"tn-alice": 10_000}, {"tn-carol": 0}))
    argv = ("--from", "tn-alice", "--to", "tn-carol", "--amount", "3", "--id", "tn-1", "--no-wait")
    started = run_cli(cluster, "transfer", *argv)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "transfer tn-1 started"

    deadline = time.monotonic() + 60
    while (status := cli_json(cluster, "status", "tn-1"))["status"] != "committed":
        assert status["status"] == "in progress", status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["request"] == {
        "transfer_id": "tn-1",
        "source_account": "tn-alice",
        "target_account": "tn-carol",
        "amount": 300,
    }
    assert status["ledger"]["debit"]["entry"]["amount"] == 300
    assert status["ledger"]["credit"]["entry"]["account_id"] == "tn-carol"
    assert status["ledger"]["reversal"] is None
    assert status["needs_attention"] is False

    human = run_cli(cluster, "status", "tn-1")
    assert human.returncode == 0
    assert human.stdout.splitlines()[0] == "transfer tn-1: committed"
    assert "credit: applied" in human.stdout
    # Where the timeline's figures come from, named for the backend that holds them.
    kept_in = "Resonate on Postgres" if backend == POSTGRES_BACKEND else "promise store"
    assert f"  timeline ({kept_in}):" in human.stdout.splitlines()


def test_status_of_an_unknown_transfer(cluster: Cluster) -> None:
    result = run_cli(cluster, "status", "tn-never")
    assert result.returncode == 1
    assert "no transfer tn-never" in result.stdout


def test_accounts_and_balances(cluster: Cluster) -> None:
    opened = cli_json(
        cluster, "accounts", "open", "ta-new", "--bank", "source", "--opening", "100.25"
    )
    assert (opened["bank"], opened["balance"], opened["status"]) == ("source", 10_025, "open")
    # An opening balance is fixed once the account exists.
    again = run_cli(cluster, "accounts", "open", "ta-new", "--bank", "source", "--opening", "5")
    assert again.returncode == 2
    assert "opening balance 100.25; an opening balance cannot change" in again.stderr

    assert (
        cli_json(cluster, "accounts", "close", "ta-new", "--bank", "source")["status"] == "closed"
    )
    ghost = run_cli(cluster, "accounts", "close", "ta-ghost", "--bank", "target")
    assert ghost.returncode == 2
    assert "'ta-ghost' does not exist on the target bank" in ghost.stderr
    bad = run_cli(cluster, "accounts", "open", "ta-x", "--bank", "target", "--opening", "1.234")
    assert bad.returncode == 2
    assert "at most two decimal places" in bad.stderr

    seeded = cli_json(cluster, "accounts", "seed")
    assert {a["account_id"] for a in seeded["banks"]["source"]} >= {"alice", "bob", "erin"}
    assert {a["account_id"] for a in seeded["banks"]["target"]} >= {"carol", "dave", "frank"}

    balances = cli_json(cluster, "balances")
    ours = {a["account_id"]: a for a in balances["banks"]["source"]}
    assert ours["ta-new"]["status"] == "closed"
    assert ours["ta-new"]["balance"] == 10_025
    real = asyncio.run(cluster.balances())
    assert balances["total"] == sum(real.values())

    human = run_cli(cluster, "balances").stdout
    assert any(
        line.split()[:4] == ["source", "ta-new", "closed", "100.25"] for line in human.splitlines()
    )


def test_status_flags_a_transfer_compensating_for_too_long(cluster: Cluster) -> None:
    """The source bank holds the reversal; past ATTENTION_AFTER, status says it needs attention."""
    asyncio.run(cluster.seed({"ts-bob": 1_000}, {"ts-closed": 0}, closed=("ts-closed",)))
    tid = "ts-1"

    async def start_with_reversal_held() -> None:
        async with cluster.banks() as (source, _):
            await source.set_faults([{"action": "hold_before", "op_id": f"{tid}-reversal"}])
            async with cluster.client() as resonate:
                request = TransferRequest(tid, "ts-bob", "ts-closed", 100)
                await start_transfer(resonate, cluster.settings, request)
            await wait_for_hold(source, f"{tid}-reversal", "before")

    asyncio.run(start_with_reversal_held())
    status = run_cli(cluster, "status", tid, "--json", env={"ATTENTION_AFTER": "0"})
    view = json.loads(status.stdout)
    assert (view["status"], view["needs_attention"]) == ("compensating", True)
    human = run_cli(cluster, "status", tid, env={"ATTENTION_AFTER": "0"}).stdout
    assert "NEEDS ATTENTION" in human.splitlines()[0]
    assert "reversal  -" in human

    async def release() -> None:
        async with cluster.banks() as (source, _):
            await source.clear_faults()

    asyncio.run(release())
    finished = asyncio.run(cluster.transfer(tid, "ts-bob", "ts-closed", 100))
    assert finished["status"] == "compensated"
    calm = json.loads(
        run_cli(cluster, "status", tid, "--json", env={"ATTENTION_AFTER": "0"}).stdout
    )
    assert (calm["status"], calm["needs_attention"]) == ("compensated", False)


def test_embedded_store_runs_the_transfer_in_the_cli(cluster: Cluster, tmp_path: Path) -> None:
    """No RESONATE_URL nor RESONATE_PG_DSN: the command itself runs the saga over a store file, quietly."""
    asyncio.run(cluster.seed({"te-alice": 5_000}, {"te-carol": 0}))
    embedded = {
        "RESONATE_URL": "",
        "RESONATE_PG_DSN": "",
        "STORE_PATH": str(tmp_path / "promises.db"),
    }
    argv = ("--from", "te-alice", "--to", "te-carol", "--amount", "7", "--id", "te-1")
    result = run_cli(cluster, "transfer", *argv, env=embedded)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "transfer te-1: committed"
    assert result.stderr == ""
    status = run_cli(cluster, "status", "te-1", "--json", env=embedded)
    assert (status.returncode, status.stderr) == (0, "")
    assert json.loads(status.stdout)["status"] == "committed"
    # The served store (or Postgres) never heard of it.
    assert asyncio.run(cluster.record("te-1")) is None


def test_worker_command_runs_transfers_and_stops_on_sigterm(cluster: Cluster) -> None:
    """``crossbank worker`` is a real worker: with the cluster's own worker gone, it does the work."""
    asyncio.run(cluster.seed({"tw-alice": 1_000}, {"tw-carol": 0}))
    log = cluster.root / "cli-worker.log"
    worker = ManagedProcess(
        "orchestrator",
        args=("worker",),
        env=cluster.worker_env,
        log_path=log,
        name="cli worker",
        ready_log=worker_ready_log(cluster.worker_env),
    )
    try:
        worker.start()
        for other in cluster.running_workers():
            other.stop()
        result = asyncio.run(cluster.transfer("tw-1", "tw-alice", "tw-carol", 250))
        assert result["status"] == "committed"
        assert worker.process is not None
        worker.stop()
        assert worker.process.returncode == 0
    finally:
        worker.stop()
