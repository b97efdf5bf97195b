"""The charts' numbers: read from a real bank's ``/metrics`` text, then rates and quantiles over a ring.

The text comes from the bank's own app (``bank.app.create_app`` on a real
ledger file), answering real requests through Flask's test client: the
same ``/metrics`` a bank process serves.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from bank.app import create_app
from bank.config import BankConfig
from bank.ledger import Ledger
from orchestrator.console.charts import (
    BankFigures,
    Charts,
    Histogram,
    MetricsUnreadable,
    Sample,
    parse,
    quantile,
    rate,
)

TOKEN = "charts-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
INF = math.inf


class Bank:
    """A real bank app on a real ledger, driven through its HTTP API."""

    def __init__(self, name: str, path: Path, ledger: Ledger | None = None) -> None:
        config = BankConfig(name=name, port=0, ledger_path=path, token=TOKEN)
        self.http: FlaskClient = create_app(config, ledger).test_client()

    def account(self, account_id: str, opening: int = 0) -> None:
        body = {"status": "open", "opening_balance": opening}
        assert (
            self.http.put(f"/accounts/{account_id}", json=body, headers=HEADERS).status_code == 201
        )

    def entry(self, op_id: str, account_id: str, amount: int, kind: str) -> int:
        body = {"op_id": op_id, "account_id": account_id, "amount": amount, "kind": kind}
        status: int = self.http.post("/entries", json=body, headers=HEADERS).status_code
        return status

    def void(self, op_id: str) -> None:
        assert self.http.post(f"/entries/{op_id}/void", headers=HEADERS).status_code == 200

    def metrics(self) -> str:
        response = self.http.get("/metrics", headers=HEADERS)
        assert response.status_code == 200
        return response.get_data(as_text=True)


@pytest.fixture
def banks(tmp_path: Path) -> tuple[Bank, Bank]:
    source, target = Bank("source", tmp_path / "s.db"), Bank("target", tmp_path / "t.db")
    source.account("alice", 10_000)
    target.account("carol")
    return source, target


def transfer(source: Bank, target: Bank, tid: str, amount: int, outcome: str) -> None:
    """Write a transfer's entries as the saga does for ``outcome``."""
    if outcome == "failed":
        assert source.entry(f"{tid}-debit", "alice", 10**9, "debit") == 422
        source.void(f"{tid}-debit")
        return
    assert source.entry(f"{tid}-debit", "alice", amount, "debit") == 201
    if outcome == "committed":
        assert target.entry(f"{tid}-credit", "carol", amount, "credit") == 201
    elif outcome == "compensated":
        assert target.entry(f"{tid}-credit", "nobody", amount, "credit") == 422
        target.void(f"{tid}-credit")
        assert source.entry(f"{tid}-reversal", "alice", amount, "reversal") == 201


def test_a_real_bank_s_metrics_give_outcomes_money_in_flight_and_step_times(
    banks: tuple[Bank, Bank],
) -> None:
    source, target = banks
    transfer(source, target, "t1", 1_000, "committed")
    transfer(source, target, "t2", 250, "committed")
    transfer(source, target, "t3", 400, "compensated")
    transfer(source, target, "t4", 0, "failed")
    assert source.entry("t5-debit", "alice", 75, "debit") == 201  # its credit not yet made

    src, tgt = parse(source.metrics()), parse(target.metrics())
    assert src.entries == {"debit": 4, "credit": 0, "reversal": 1}
    assert src.cents == {"debit": 1_725, "credit": 0, "reversal": 400}
    assert src.voids == 1
    assert tgt.entries == {"debit": 0, "credit": 2, "reversal": 0}
    assert tgt.cents == {"debit": 0, "credit": 1_250, "reversal": 0}
    assert tgt.voids == 1  # t3's credit was fenced: not a failed transfer, the source's are
    sample = Sample(0.0, {"source": src, "target": tgt})
    assert sample.outcomes() == {"committed": 2, "compensated": 1, "failed": 1}
    assert sample.in_flight() == 75
    # Every POST /entries answered, refused ones too; not the voids, accounts or /metrics.
    assert src.step.total == 6
    assert tgt.step.total == 3
    assert src.step.bounds[-1] == INF
    assert list(src.step.counts) == sorted(src.step.counts)


def test_no_bank_s_figures_stand_in_for_another_s() -> None:
    up = BankFigures(
        {"debit": 5, "credit": 0, "reversal": 1},
        {"debit": 500, "credit": 0, "reversal": 100},
        2,
        Histogram(),
    )
    target_down = Sample(0.0, {"source": up, "target": None})
    assert target_down.outcomes() == {"committed": None, "compensated": 1, "failed": 2}
    assert target_down.in_flight() is None
    source_down = Sample(0.0, {"source": None, "target": up})
    assert source_down.outcomes() == {"committed": 0, "compensated": None, "failed": None}
    assert source_down.in_flight() is None


class UnreadableLedger(Ledger):
    def totals(self) -> dict[str, tuple[int, int]]:
        raise sqlite3.OperationalError("disk I/O error")


def test_a_bank_that_cannot_read_its_ledger_gives_no_counts_not_zeros(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    bank = Bank("source", path, UnreadableLedger(path))
    bank.account("alice", 100)
    assert bank.entry("x-debit", "alice", 10, "debit") == 201
    figures = parse(bank.metrics())
    assert figures.entries is None
    assert figures.cents is None
    assert figures.voids is None
    assert figures.step.total == 1  # the histogram is still served
    sample = Sample(0.0, {"source": figures, "target": figures})
    assert sample.outcomes() == {"committed": None, "compensated": None, "failed": None}
    assert sample.in_flight() is None


def test_a_bank_that_never_took_an_entry_has_an_empty_step_histogram(tmp_path: Path) -> None:
    figures = parse(Bank("target", tmp_path / "t.db").metrics())
    assert figures.step == Histogram()
    assert figures.entries == {"debit": 0, "credit": 0, "reversal": 0}
    assert quantile(0.5, figures.step) is None


def test_text_that_is_not_the_format_is_refused() -> None:
    with pytest.raises(MetricsUnreadable):
        parse("<html>a login page</html>\n")
    with pytest.raises(MetricsUnreadable):
        parse('crossbank_bank_ledger_voids{bank="source"} many\n')
    with pytest.raises(MetricsUnreadable):  # a bucket with no bound
        parse(
            "# TYPE crossbank_bank_request_seconds histogram\n"
            'crossbank_bank_request_seconds_bucket{route="/entries",method="POST"} 1\n'
        )


def test_quantiles_interpolate_inside_a_bucket_as_prometheus_does() -> None:
    bounds = (0.001, 0.0025, 0.005, 0.01, INF)
    # 10 under 1 ms, 10 between 1 and 2.5 ms, none above.
    histogram = Histogram(bounds, (10, 20, 20, 20, 20))
    assert quantile(0.5, histogram) == pytest.approx(0.001)
    assert quantile(0.25, histogram) == pytest.approx(0.0005)
    assert quantile(0.75, histogram) == pytest.approx(0.00175)
    assert quantile(0.99, histogram) == pytest.approx(0.001 + 0.0015 * 0.98)
    # Past the largest finite bound: that bound, not infinity.
    slow = Histogram(bounds, (0, 0, 0, 1, 4))
    assert quantile(0.99, slow) == 0.01
    assert quantile(0.5, Histogram(bounds, (0, 0, 0, 0, 0))) is None


def test_a_histogram_s_delta_and_a_restart_between_two_scrapes() -> None:
    bounds = (0.01, INF)
    older, newer = Histogram(bounds, (5, 6)), Histogram(bounds, (7, 10))
    assert newer.since(older) == Histogram(bounds, (2, 4))
    restarted = Histogram(bounds, (1, 1))
    assert restarted.since(older) == restarted  # counted since the restart
    assert newer.since(Histogram()) == newer  # nothing before: all of it


def test_a_rate_needs_both_ends_and_a_count_that_only_grows() -> None:
    assert rate(10, 20, 5.0) == 2.0
    assert rate(None, 20, 5.0) is None
    assert rate(10, None, 5.0) is None
    assert rate(20, 10, 5.0) is None  # a new ledger: no rate, not a negative one
    assert rate(10, 10, 0.0) is None


def figures(committed: int, step: Histogram | None = None, *, failed: int = 0) -> BankFigures:
    """Both banks' figures rolled into one (its credits on the target, its voids on the source)."""
    return BankFigures(
        {"debit": committed, "credit": committed, "reversal": 0},
        {"debit": 100 * committed, "credit": 100 * committed, "reversal": 0},
        failed,
        step or Histogram(),
    )


def both(committed: int) -> dict[str, BankFigures | None]:
    """Both banks after ``committed`` transfers of 1.00 committed, nothing in flight."""
    return {"source": figures(committed), "target": figures(committed)}


def test_rates_over_the_window_with_a_gap_where_a_bank_was_down() -> None:
    charts = Charts(size=50, rate_window=2.0)
    for second in range(6):  # two committed transfers a second
        charts.add(Sample(float(second), both(2 * second)))
    assert [p.rates["committed"] for p in charts.points] == [None, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert [p.rates["failed"] for p in charts.points] == [None, 0.0, 0.0, 0.0, 0.0, 0.0]
    down = charts.add(Sample(6.0, {"source": figures(12), "target": None}))
    assert down.counts["committed"] is None
    assert down.rates["committed"] is None
    assert down.rates["failed"] == 0.0  # the source still answers
    assert down.in_flight is None
    # Back, with 6 more committed meanwhile: measured across the gap, from 2 s before.
    back = charts.add(Sample(7.0, both(16)))
    assert back.rates["committed"] == (16 - 10) / 2
    section = charts.section(poll_interval=0.5)
    assert section["rates"]["committed"][-2:] == [None, 3.0]
    assert section["up"]["target"][-2:] == [False, True]
    assert section["in_flight"][-2:] == [None, 0]
    assert section["now"]["counts"] == {"committed": 16, "compensated": 0, "failed": 0}
    assert section["t"][0] == -7.0
    assert section["t"][-1] == 0.0


def test_latency_quantiles_come_from_the_window_s_bucket_deltas_only() -> None:
    bounds = (0.001, 0.01, 0.1, INF)
    charts = Charts(size=50, latency_window=2.0)
    cumulative = [0, 0, 0, 0]

    def observe(bucket: int, count: int) -> Histogram:
        for index in range(bucket, len(bounds)):
            cumulative[index] += count
        return Histogram(bounds, tuple(cumulative))

    first = charts.add(Sample(0.0, {"source": figures(0, observe(0, 100)), "target": None}))
    assert first.latency["source"] == {"requests": None, "p50": None, "p99": None}
    assert first.latency["target"] is None  # down: no figure, not 0 ms
    # A second of fast steps (under 1 ms), then two seconds of slow ones (10-100 ms).
    charts.add(Sample(1.0, {"source": figures(0, observe(0, 50)), "target": None}))
    charts.add(Sample(2.0, {"source": figures(0, observe(2, 10)), "target": None}))
    slow = charts.add(Sample(3.0, {"source": figures(0, observe(2, 10)), "target": None}))
    latency = slow.latency["source"]
    assert latency is not None
    assert latency["requests"] == 20  # from 1 s to 3 s: the fast ones before are out
    assert latency["p50"] == pytest.approx(55.0)  # ms: 10 + 90 * 10/20
    assert latency["p99"] == pytest.approx(10 + 90 * 19.8 / 20)
    idle = charts.add(Sample(5.0, {"source": figures(0, observe(0, 0)), "target": None}))
    assert idle.latency["source"] == {"requests": 0, "p50": None, "p99": None}
    section = charts.section(poll_interval=1.0)
    assert section["latency_ms"]["source"]["p50"] == [
        None,
        pytest.approx(0.5),
        pytest.approx(0.6),  # from 0 s: the 50 fast ones and 10 slow
        pytest.approx(55.0),
        None,
    ]
    assert section["latency_ms"]["target"]["p99"] == [None] * 5
    assert section["now"]["latency"]["target"] is None
    assert section["now"]["banks"]["target"]["up"] is False


def test_the_ring_keeps_the_last_samples_only() -> None:
    charts = Charts(size=5)
    for second in range(20):
        charts.add(Sample(float(second), both(second)))
    section = charts.section(poll_interval=0.5)
    assert len(section["t"]) == len(section["in_flight"]) == len(section["rates"]["failed"]) == 5
    assert section["t"] == [-4.0, -3.0, -2.0, -1.0, 0.0]
    assert section["span"] == 2.5
    assert section["now"]["counts"]["committed"] == 19
    assert section["now"]["in_flight"] == 0
    assert section["now"]["in_flight_text"] == "0.00"


def test_before_the_first_poll_nothing_is_known() -> None:
    section: dict[str, Any] = Charts().section(poll_interval=0.5)
    assert section["t"] == []
    assert section["now"]["counts"] == {"committed": None, "compensated": None, "failed": None}
    assert section["now"]["in_flight"] is None
    assert section["now"]["banks"]["source"]["up"] is False


def test_the_lines_left_out_before_parsing_change_nothing(banks: tuple[Bank, Bank]) -> None:
    """parse() gives the parser only the lines it uses; the whole text gives the same figures."""
    source, target = banks
    transfer(source, target, "t1", 500, "committed")
    transfer(source, target, "t2", 0, "failed")
    source.http.get("/entries", headers=HEADERS)  # other routes' buckets, left out
    text = source.metrics()
    entries: dict[str, int] = {}
    buckets: dict[float, float] = {}
    voids = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.name == "crossbank_bank_ledger_entries":
                entries[sample.labels["kind"]] = int(sample.value)
            elif family.name == "crossbank_bank_ledger_voids":
                voids = int(sample.value)
            elif sample.name == "crossbank_bank_request_seconds_bucket" and (
                sample.labels["route"],
                sample.labels["method"],
            ) == ("/entries", "POST"):
                buckets[float(sample.labels["le"])] = sample.value
    figures = parse(text)
    assert figures.entries == entries
    assert figures.voids == voids == 1
    assert dict(zip(figures.step.bounds, figures.step.counts, strict=True)) == buckets
    assert figures.step.total == 2
