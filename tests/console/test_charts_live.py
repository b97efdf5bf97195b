"""The charts on a real local system: its banks' /metrics, read by the console, in ``/api/state``.

Transfers of each outcome run through the console; the ``charts`` section
counts them as the ledgers do, shows a held credit as money in flight and
then nothing in flight, times each bank's steps, and shows a bank that is
down as unknown (None), never as 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrator.bank_client import BankClient, BankError, BankUnavailable
from orchestrator.console import charts, gather
from orchestrator.console.config import ConsoleSettings
from orchestrator.local.stage import demo_settings
from orchestrator.local.supervisor import LocalTls
from orchestrator.local.system import TARGET, with_fresh_tokens
from orchestrator.settings import Settings
from tests.conftest import TlsFiles
from tests.console.conftest import LEASE_TTL, LocalConsole, local_console


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[LocalConsole]:
    """Banks that need their token and serve https: the console reads /metrics as it reads the rest."""
    tls = LocalTls(ca=tls_files.ca.cert, cert=tls_files.server.cert, key=tls_files.server.key)
    settings = with_fresh_tokens(demo_settings(LEASE_TTL))
    with local_console(tmp_path_factory.mktemp("charts"), settings=settings, tls=tls) as running:
        yield running


def charts_when(
    played: LocalConsole,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    within: float = 30.0,
) -> dict[str, Any]:
    """The ``charts`` section once ``check`` holds for it."""
    deadline = time.monotonic() + within
    section: dict[str, Any] = {}
    while time.monotonic() < deadline:
        section = played.state().get("charts") or {}
        if section and check(section):
            return section
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {within}s: {section.get('now')}")


def row_status(played: LocalConsole, transfer_id: str) -> str | None:
    rows = {row["transfer_id"]: row for row in played.state()["transfers"]}
    return rows[transfer_id]["status"] if transfer_id in rows else None


def start(played: LocalConsole, source: str, target: str, amount: str, transfer_id: str) -> None:
    body = {"from": source, "to": target, "amount": amount, "id": transfer_id}
    status, answer = played.post("/api/transfers", body)
    assert status == 200, answer


def finished(played: LocalConsole, transfer_id: str, status: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while row_status(played, transfer_id) != status:
        assert time.monotonic() < deadline, f"{transfer_id} not {status}"
        time.sleep(0.1)


def test_the_charts_count_each_outcome_and_the_money_in_flight(played: LocalConsole) -> None:
    first = charts_when(
        played,
        lambda c: c["now"]["counts"]["committed"] is not None,
        "both banks read",
    )
    assert first["now"]["counts"] == {"committed": 0, "compensated": 0, "failed": 0}
    assert first["now"]["in_flight"] == 0

    for transfer_id in ("chart-ok-1", "chart-ok-2"):
        start(played, "alice", "carol", "2.50", transfer_id)
        finished(played, transfer_id, "committed")
    ok = charts_when(
        played,
        lambda c: c["now"]["counts"]["committed"] == 2,
        "two committed counted",
    )
    assert ok["now"]["rates"]["committed"] > 0  # both within the last few seconds

    start(played, "erin", "dave", "50.00", "chart-failed-1")  # erin has nothing
    finished(played, "chart-failed-1", "failed")
    charts_when(played, lambda c: c["now"]["counts"]["failed"] == 1, "the failure counted")

    # A compensation, as the crash demo makes one: the credit held, frank closed meanwhile.
    assert played.post("/api/faults/hold-credit")[0] == 200
    start(played, "bob", "frank", "40.00", "chart-comp-1")
    held = charts_when(
        played,
        lambda c: c["now"]["in_flight"] == 4000,
        "40.00 in flight while its credit is held",
    )
    assert held["now"]["in_flight_text"] == "40.00"
    assert held["in_flight"][-1] == 4000
    closed = {"bank": "target", "account": "frank", "action": "close"}
    assert played.post("/api/accounts", closed)[0] == 200
    try:
        assert played.post("/api/faults/release")[0] == 200
        finished(played, "chart-comp-1", "compensated")
    finally:
        assert played.post("/api/accounts", {**closed, "action": "open"})[0] == 200

    done = charts_when(
        played,
        lambda c: c["now"]["counts"]["compensated"] == 1 and c["now"]["in_flight"] == 0,
        "the compensation counted and nothing in flight",
    )
    assert done["now"]["counts"] == {"committed": 2, "compensated": 1, "failed": 1}
    assert done["now"]["in_flight_text"] == "0.00"
    # The same counts as the transfers the console lists, by status.
    statuses = [row["status"] for row in played.state()["transfers"]]
    assert {s: statuses.count(s) for s in charts.OUTCOMES} == done["now"]["counts"]
    # The series drew each outcome, and the 40.00 held in flight, within the last minute.
    assert max(r for r in done["rates"]["committed"] if r is not None) > 0
    assert max(r for r in done["rates"]["compensated"] if r is not None) > 0
    assert max(r for r in done["rates"]["failed"] if r is not None) > 0
    assert max(c for c in done["in_flight"] if c is not None) == 4000
    assert min(c for c in done["in_flight"] if c is not None) == 0
    # Both banks took entries in the last seconds (the reversal, the refused credit).
    for bank in ("source", "target"):
        latency = done["now"]["latency"][bank]
        assert latency["requests"] >= 1, latency
        assert 0 < latency["p50"] <= latency["p99"], latency


def test_a_bank_that_is_down_is_a_gap_not_a_zero(played: LocalConsole) -> None:
    before = charts_when(played, lambda c: c["now"]["banks"]["target"]["up"], "the target bank up")[
        "now"
    ]["counts"]
    played.system.kill(TARGET)
    try:
        down = charts_when(
            played, lambda c: not c["now"]["banks"]["target"]["up"], "the target bank down"
        )
        now = down["now"]
        assert "target bank" in now["banks"]["target"]["error"]
        assert now["counts"]["committed"] is None
        assert now["in_flight"] is None
        assert now["in_flight_text"] is None
        assert now["latency"]["target"] is None
        assert now["rates"]["committed"] is None
        # What only the source bank counts is still shown.
        assert now["counts"]["compensated"] == before["compensated"]
        assert now["counts"]["failed"] == before["failed"]
        assert now["banks"]["source"]["up"] is True
        assert down["up"]["target"][-1] is False
        assert down["in_flight"][-1] is None
        assert down["rates"]["committed"][-1] is None
    finally:
        played.system.restart(TARGET)
    back = charts_when(played, lambda c: c["now"]["banks"]["target"]["up"], "the bank back")
    # The ledger's counts survive the bank's restart.
    assert back["now"]["counts"] == before
    assert back["now"]["in_flight"] == 0


def test_metrics_are_read_with_the_bank_s_token(played: LocalConsole) -> None:
    settings = played.system.settings
    assert settings.bank_token  # these banks need it
    assert settings.target_bank_url.startswith("https://")

    async def scrape(token: str | None) -> str:
        url = settings.target_bank_url
        async with BankClient(url, token=token, tls=settings.tls_for(url), name="target") as bank:
            return await bank.metrics_text()

    figures = charts.parse(asyncio.run(scrape(settings.bank_token)))
    assert figures.entries is not None
    with pytest.raises(BankError, match="answered 401"):
        asyncio.run(scrape("not-the-token"))


@pytest.mark.anyio
async def test_the_target_bank_is_read_before_the_source_bank(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """So every credit counted has its debit counted: money in flight never shows below zero."""
    source = BankClient("http://127.0.0.1:9", name="source")
    target = BankClient("http://127.0.0.1:9", name="target")
    reader = gather.Reader(Settings(), ConsoleSettings(), None, source, target)  # type: ignore[arg-type]
    asked: list[str] = []

    def answer(name: str, text: str | None) -> Callable[[], Any]:
        async def read() -> str:
            asked.append(name)
            if text is None:
                raise BankUnavailable(f"{name} bank at ... is unreachable")
            return text

        return read

    metrics = (
        'crossbank_bank_ledger_entries{bank="source",kind="debit"} 3\n'
        'crossbank_bank_ledger_cents{bank="source",kind="debit"} 300\n'
        'crossbank_bank_ledger_voids{bank="source"} 1\n'
    )
    monkeypatch.setattr(source, "metrics_text", answer("source", metrics))
    monkeypatch.setattr(target, "metrics_text", answer("target", None))
    up = {"up": True, "error": None}
    await reader._sample({"source": up, "target": up})
    assert asked == ["target", "source"]
    section = reader.charts.section(poll_interval=0.5)
    assert section["now"]["banks"]["target"] == {
        "up": False,
        "error": "target bank at ... is unreachable",
    }
    assert section["now"]["counts"] == {"committed": None, "compensated": 0, "failed": 1}
    assert section["now"]["in_flight"] is None
    # A bank this poll found down is not asked again: down on the charts, with its reason.
    asked.clear()
    down = {"up": False, "error": "source bank not reachable at ..."}
    await reader._sample({"source": down, "target": up})
    assert asked == ["target"]
    now = reader.charts.section(poll_interval=0.5)["now"]
    assert now["banks"]["source"] == {"up": False, "error": "source bank not reachable at ..."}
    assert now["counts"] == {"committed": None, "compensated": None, "failed": None}
