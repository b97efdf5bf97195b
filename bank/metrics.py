"""A bank's Prometheus metrics, served at ``GET /metrics`` (bank/README.md, "Metrics").

Each app has its own ``CollectorRegistry``, never prometheus_client's global
one: tests build several apps in one process, and one registry per process
would refuse the second app's metrics (and mix their counts). Every label
takes its values from a fixed set (kinds, answers, the ledger's error codes,
route templates, known methods), never an account id or an op id, so the
number of series stays bounded and no single account shows. The ledger
gauges are totals over the whole ledger, read from it at scrape time, so they
are right after a restart.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bank.ledger import ENTRY_KINDS, Ledger, LedgerError

log = logging.getLogger("bank")

#: What a ``POST /entries`` can come to (``rejected`` carries the ledger's error code).
ENTRY_ANSWERS = ("applied", "replayed", "rejected", "voided")
#: What a ``POST /entries/{op_id}/void`` can come to.
VOID_ANSWERS = ("voided", "already_voided", "applied")
#: The methods a request is counted under; any other is counted as ``other``.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Requests take a few milliseconds; held ones up to 120 s (bank/faults.py).
_SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    120.0,
)


class BankMetrics:
    """One bank's metrics and the registry that serves them."""

    def __init__(self, bank: str, ledger: Ledger) -> None:
        self.bank = bank
        self.registry = CollectorRegistry()
        self._entries = Counter(
            "crossbank_bank_entries",
            "POST /entries answered, by kind and answer (code: the error code when rejected).",
            ["bank", "kind", "answer", "code"],
            registry=self.registry,
        )
        self._voids = Counter(
            "crossbank_bank_voids",
            "POST /entries/{op_id}/void answered, by answer.",
            ["bank", "answer"],
            registry=self.registry,
        )
        self._seconds = Histogram(
            "crossbank_bank_request_seconds",
            "Time to answer a request, by route template (unmatched: no route) and method.",
            ["bank", "route", "method"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(LedgerTotals(bank, ledger))
        # Series that every bank has from the start, so a rate over them is never missing.
        for kind in ENTRY_KINDS:
            for answer in ("applied", "replayed", "voided"):
                self._entries.labels(bank, kind, answer, "")
        for answer in VOID_ANSWERS:
            self._voids.labels(bank, answer)

    def entry_answered(self, kind: str, outcome: bool | LedgerError) -> None:
        """Count a ``POST /entries`` the ledger decided: True written now, False a replay, or its refusal."""
        if outcome is True:
            answer, code = "applied", ""
        elif outcome is False:
            answer, code = "replayed", ""
        elif outcome.code in ("op_voided", "cancelled"):
            answer, code = "voided", ""
        else:
            answer, code = "rejected", outcome.code
        self._entries.labels(self.bank, kind, answer, code).inc()

    def void_answered(self, state: str, voided_now: bool) -> None:
        """Count a void: ``state`` is what the ledger answered (``voided`` or ``applied``)."""
        answer = "applied" if state == "applied" else "voided" if voided_now else "already_voided"
        self._voids.labels(self.bank, answer).inc()

    def request_took(self, route: str | None, method: str, seconds: float) -> None:
        """Time one request: ``route`` is its URL rule's template, None when no rule matched."""
        self._seconds.labels(
            self.bank, route or "unmatched", method if method in _METHODS else "other"
        ).observe(seconds)

    def exposition(self) -> bytes:
        """Every metric in Prometheus's text format (serve it as ``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


class LedgerTotals(Collector):
    """``crossbank_bank_ledger_cents`` and ``_entries`` per kind, and ``_voids``, read from the
    ledger at each scrape.

    A ledger that cannot be read leaves both out of that scrape (and is logged),
    so ``/metrics`` still serves the counters and the histogram.
    """

    def __init__(self, bank: str, ledger: Ledger) -> None:
        self.bank = bank
        self.ledger = ledger

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # The names alone, for the registry's duplicate check: no ledger read at registration.
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            totals = self.ledger.totals()
            voided = self.ledger.voided_count()
        except sqlite3.Error as exc:
            log.warning("metrics: cannot read the ledger's totals, leaving them out: %s", exc)
            return
        cents, entries, voids = self._families()
        for kind, (count, amount) in totals.items():
            cents.add_metric([self.bank, kind], amount)
            entries.add_metric([self.bank, kind], count)
        voids.add_metric([self.bank], voided)
        yield cents
        yield entries
        yield voids

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "crossbank_bank_ledger_cents",
                "Sum of the amounts of the ledger's entries, by kind (whole ledger, read at scrape).",
                labels=["bank", "kind"],
            ),
            GaugeMetricFamily(
                "crossbank_bank_ledger_entries",
                "Number of the ledger's entries, by kind (whole ledger, read at scrape).",
                labels=["bank", "kind"],
            ),
            GaugeMetricFamily(
                "crossbank_bank_ledger_voids",
                "Op ids voided before they applied (the saga's fence), whole ledger, read at "
                "scrape: on the source bank, one per failed transfer.",
                labels=["bank"],
            ),
        )
