"""A worker's Prometheus metrics: what its sagas did, and whether it hears the store.

Counted where things happen, never worked out afterwards: each bank answer
by :class:`orchestrator.bank_client.BankClient` (its ``observer``), each
outcome by the step that decides it (:mod:`orchestrator.saga`), the push
channel by the channel. Every worker has a :class:`WorkerMetrics`; only one
started with ``METRICS_PORT`` serves it, on prometheus-client's own HTTP
server, in a thread of its own.

Who may read it: whoever reaches the port. prometheus-client's server has no
token check, so it listens on 127.0.0.1 unless ``METRICS_HOST`` says
otherwise (compose: the internal network, never a published port). Nothing
in it names a transfer, an account or an amount: only counts, durations, and
reasons from the banks' fixed set of codes.

A worker's counters start at 0 with the process and cover what it ran; add
them up over the workers (``sum(...)``). Money in flight is not a worker's to
say (a killed worker forgets what it had debited): it is read from the banks'
own ledgers (bank/README.md, "Metrics").
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from envsettings import SettingsError, integer, string

logger = logging.getLogger(__name__)

#: Transfers remembered at once (start times, reversals waiting): a bound, not a target.
MAX_TRACKED = 10_000
#: A reason label is a bank's error code; anything else is counted as ``other``.
_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Transfer durations: from well under a second to a reversal that waited for minutes.
TRANSFER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
#: One bank request: milliseconds normally, up to the client's timeout.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class MetricsAddress:
    """Where a worker serves ``/metrics``: ``METRICS_HOST`` and ``METRICS_PORT``."""

    host: str
    port: int


def metrics_address(env: Mapping[str, str] = os.environ) -> MetricsAddress | None:
    """``METRICS_PORT`` (unset: no metrics served) on ``METRICS_HOST`` (default 127.0.0.1)."""
    if not env.get("METRICS_PORT"):
        return None
    port = integer(env, "METRICS_PORT", 0, low=1, high=65535)
    return MetricsAddress(string(env, "METRICS_HOST", "127.0.0.1"), port)


class WorkerMetrics:
    """One worker's counters, histograms and gauges, in a registry of its own."""

    def __init__(self, *, attention_after: float = 300.0) -> None:
        self.registry = CollectorRegistry()
        self.attention_after = attention_after
        registry = self.registry
        self._started = Counter(
            "crossbank_worker_transfers_started",
            "Transfers whose debit this worker attempted first.",
            registry=registry,
        )
        self._finished = Counter(
            "crossbank_worker_transfers_finished",
            "Transfers this worker finished, by status and reason (the bank's code).",
            ["status", "reason"],
            registry=registry,
        )
        self._duration = Histogram(
            "crossbank_worker_transfer_seconds",
            "From the first step this worker ran for a transfer to its outcome.",
            ["status"],
            buckets=TRANSFER_BUCKETS,
            registry=registry,
        )
        self._requests = Histogram(
            "crossbank_worker_bank_request_seconds",
            "Bank requests of the saga's steps, by bank, kind (debit, credit, reversal, "
            "void) and answer (applied, rejected, voided, unknown).",
            ["bank", "kind", "answer"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self._retries = Counter(
            "crossbank_worker_retries",
            "Step attempts that will be retried: an unknown outcome, or a refused reversal.",
            ["bank", "kind"],
            registry=registry,
        )
        self._fences = Counter(
            "crossbank_worker_fences",
            "Voids of an op id (the fence), by what the bank found: applied or voided.",
            ["bank", "found"],
            registry=registry,
        )
        self._push_up = Gauge(
            "crossbank_worker_push_channel_up",
            "1 while the push channel from the store is open, else 0.",
            registry=registry,
        )
        self._push_lost = Counter(
            "crossbank_worker_push_channel_losses",
            "Times the push channel was lost (it reconnects by itself).",
            registry=registry,
        )
        #: Transfer id -> when its debit was first attempted here (monotonic s).
        self._began: OrderedDict[str, float] = OrderedDict()
        #: Transfer id -> when its compensation began (epoch s), while its reversal is
        #: refused here; forgotten when it finishes here (or the bound is reached).
        self._waiting: OrderedDict[str, float] = OrderedDict()
        self._heard = False
        #: How many transfers the worker holds now; set by the worker.
        self.running: Callable[[], int] | None = None
        registry.register(_Gauges(self))

    # -- the saga's steps -------------------------------------------------------

    def transfer_started(self, transfer_id: str) -> None:
        """Its debit is attempted here: its duration counts from now (from the first attempt)."""
        self._started.inc()
        if transfer_id not in self._began:
            self._began[transfer_id] = time.monotonic()
            _bound(self._began)

    def transfer_finished(self, transfer_id: str, status: str, reason: str | None) -> None:
        label = "" if reason is None else reason if _REASON.fullmatch(reason) else "other"
        self._finished.labels(status, label).inc()
        began = self._began.pop(transfer_id, None)
        if began is not None:
            self._duration.labels(status).observe(time.monotonic() - began)
        self._waiting.pop(transfer_id, None)

    def reversal_refused(self, transfer_id: str, compensating_since: float) -> None:
        self._retries.labels("source", "reversal").inc()
        self._waiting[transfer_id] = compensating_since
        _bound(self._waiting)

    # -- the bank client's observer ---------------------------------------------

    def answered(self, bank: str, kind: str, answer: str, seconds: float) -> None:
        """One bank request of ``kind`` got ``answer`` after ``seconds``."""
        self._requests.labels(bank, kind, answer).observe(seconds)
        if answer == "unknown" and kind != "void":
            self._retries.labels(bank, kind).inc()
        if kind == "void" and answer != "unknown":
            self._fences.labels(bank, answer).inc()

    # -- the push channel's watcher ---------------------------------------------

    def connected(self) -> None:
        self._push_up.set(1)
        self._heard = True

    def disconnected(self, reason: str) -> None:
        if self._heard:
            self._push_lost.inc()
        self._push_up.set(0)
        self._heard = False

    # -- serving ----------------------------------------------------------------

    def serve(self, address: MetricsAddress) -> None:
        """Serve ``/metrics`` at ``address`` from a thread (for as long as the process runs)."""
        try:
            start_http_server(address.port, addr=address.host, registry=self.registry)
        except OSError as exc:
            where = f"{address.host}:{address.port}"
            raise SettingsError("METRICS_PORT", f"cannot listen on {where}: {exc}") from None
        logger.info("metrics at http://%s:%d/metrics", address.host, address.port)


class _Gauges(Collector):
    """What is true now, read at each scrape: transfers held, reversals waiting."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        metrics = self._metrics
        if metrics.running is not None:
            yield GaugeMetricFamily(
                "crossbank_worker_transfers_running",
                "Transfers whose task this worker holds now.",
                value=metrics.running(),
            )
        waiting = list(metrics._waiting.values())
        yield GaugeMetricFamily(
            "crossbank_worker_reversals_waiting",
            "Compensating transfers whose reversal the source bank refused, retried here.",
            value=len(waiting),
        )
        late = time.time() - metrics.attention_after
        yield GaugeMetricFamily(
            "crossbank_worker_reversals_needing_attention",
            "Of those, the ones compensating for longer than ATTENTION_AFTER.",
            value=sum(1 for since in waiting if since < late),
        )


def _bound(tracked: OrderedDict[str, float]) -> None:
    """Forget the oldest once more than :data:`MAX_TRACKED` are remembered."""
    while len(tracked) > MAX_TRACKED:
        tracked.popitem(last=False)
