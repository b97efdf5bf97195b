"""The console's live charts, from the banks' own ``GET /metrics`` (bank/README.md, "Metrics").

Not a second source of truth: each poll the console reads both banks'
metrics once and keeps the few numbers the charts need, one sample per
poll in a ring of the last :data:`SAMPLES`:

- transfers by outcome, from the ledgers' totals (gauges read by the bank
  from its ledger at each scrape, so they survive a bank's restart):
  committed = the target bank's credit entries, compensated = the source
  bank's reversal entries, failed = the source bank's voids (op ids fenced
  before they applied: one per failed transfer);
- money in flight, in cents: the source bank's debits minus its reversals
  minus the target bank's credits (debited and neither credited nor given
  back yet);
- each bank's step latency: the cumulative buckets of its
  ``crossbank_bank_request_seconds`` histogram for ``POST /entries``.

From the ring come per-second rates of each outcome over the last
:data:`RATE_WINDOW` seconds, and each bank's p50 and p99 over the last
:data:`LATENCY_WINDOW` seconds, from the histogram's bucket deltas (the way
Prometheus's ``histogram_quantile`` interpolates inside a bucket). A figure
that needs a bank that did not answer is None, shown as a gap and as
"down", never as 0. A sample's windowed figures look only backwards, so
each is computed once, when its sample comes in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from orchestrator import money

#: Samples kept: one per poll (at the default 0.5 s poll, the last minute).
SAMPLES = 120
#: Seconds a rate is measured over (at least one poll apart).
RATE_WINDOW = 5.0
#: Seconds the latency quantiles are measured over (at least one poll apart).
LATENCY_WINDOW = 10.0
#: The quantiles shown, by name.
QUANTILES = (("p50", 0.5), ("p99", 0.99))
#: The ledger's entry kinds, and the transfers' final outcomes.
KINDS = ("debit", "credit", "reversal")
OUTCOMES = ("committed", "compensated", "failed")
BANKS = ("source", "target")
#: The bank step: the route template and method of an entry's request.
STEP_ROUTE, STEP_METHOD = "/entries", "POST"

_ENTRIES = "crossbank_bank_ledger_entries"
_CENTS = "crossbank_bank_ledger_cents"
_VOIDS = "crossbank_bank_ledger_voids"
_SECONDS = "crossbank_bank_request_seconds"
_FAMILIES = frozenset({_ENTRIES, _CENTS, _VOIDS, _SECONDS})


class MetricsUnreadable(ValueError):
    """A ``/metrics`` answer that is not Prometheus's text format."""


@dataclass(frozen=True)
class Histogram:
    """A histogram's cumulative bucket counts, by ascending upper bound (the last is +Inf)."""

    bounds: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()

    @property
    def total(self) -> float:
        return self.counts[-1] if self.counts else 0.0

    def since(self, older: Histogram) -> Histogram:
        """What was observed after ``older``; all of this one if the bank restarted between them."""
        if older.bounds != self.bounds or any(
            new < old for new, old in zip(self.counts, older.counts, strict=True)
        ):
            return self  # counters reset (a restart): all it has is since then
        return Histogram(
            self.bounds,
            tuple(new - old for new, old in zip(self.counts, older.counts, strict=True)),
        )


def quantile(q: float, histogram: Histogram) -> float | None:
    """The ``q`` quantile of what ``histogram`` observed, None if it observed nothing.

    Linear inside the bucket the rank falls in, from 0 below the first
    bound; in the +Inf bucket, the largest finite bound (as Prometheus does).
    """
    total = histogram.total
    if total <= 0:
        return None
    rank = q * total
    bounds, counts = histogram.bounds, histogram.counts
    for index, (upper, count) in enumerate(zip(bounds, counts, strict=True)):
        if count >= rank:
            if math.isinf(upper):
                finite = [bound for bound in bounds if not math.isinf(bound)]
                return finite[-1] if finite else None
            lower = bounds[index - 1] if index else 0.0
            below = counts[index - 1] if index else 0.0
            return lower + (upper - lower) * (rank - below) / (count - below)
    return None


@dataclass(frozen=True)
class BankFigures:
    """One bank's ``/metrics``, cut down to what the charts use.

    ``entries``, ``cents`` and ``voids`` are None when the bank left its
    ledger gauges out (it could not read its ledger); ``step`` is empty
    until the bank has answered a ``POST /entries``.
    """

    entries: Mapping[str, int] | None
    cents: Mapping[str, int] | None
    voids: int | None
    step: Histogram


def parse(text: str) -> BankFigures:
    """Read one bank's ``/metrics`` text; :class:`MetricsUnreadable` if it is not the format.

    The ``bank`` label is not checked: a scrape holds one bank's series only.
    """
    entries: dict[str, int] = {}
    cents: dict[str, int] = {}
    voids: int | None = None
    seen: set[str] = set()
    buckets: dict[float, float] = {}
    kept = [line for line in text.splitlines() if _wanted(line)]
    if not kept:  # a bank always declares these families, even before any sample
        raise MetricsUnreadable("no crossbank bank metrics in it")
    try:
        for family in text_string_to_metric_families("\n".join(kept) + "\n"):
            seen.add(family.name)
            for sample in family.samples:
                labels = sample.labels
                if family.name == _ENTRIES:
                    entries[labels.get("kind", "")] = int(sample.value)
                elif family.name == _CENTS:
                    cents[labels.get("kind", "")] = int(sample.value)
                elif family.name == _VOIDS:
                    voids = int(sample.value)
                elif (
                    family.name == _SECONDS
                    and sample.name == f"{_SECONDS}_bucket"
                    and labels.get("route") == STEP_ROUTE
                    and labels.get("method") == STEP_METHOD
                ):
                    buckets[float(labels["le"])] = sample.value
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise MetricsUnreadable(f"not Prometheus's text format ({exc})") from exc
    bounds = tuple(sorted(buckets))
    return BankFigures(
        entries={kind: entries.get(kind, 0) for kind in KINDS} if _ENTRIES in seen else None,
        cents={kind: cents.get(kind, 0) for kind in KINDS} if _CENTS in seen else None,
        voids=voids,
        step=Histogram(bounds, tuple(buckets[bound] for bound in bounds)),
    )


def _wanted(line: str) -> bool:
    """Whether the parser needs ``line``: the families used and, of the histogram, only the
    step's buckets. Most of a bank's text is other routes' buckets, and the parser's time
    grows with the lines: 3.5 ms for a bank's whole text, a sixth of that for these."""
    if line.startswith("#"):
        words = line.split(maxsplit=3)
        return len(words) > 2 and words[2] in _FAMILIES
    name = line.split("{", 1)[0].split(" ", 1)[0]
    if name == f"{_SECONDS}_bucket":
        # A first cut only: the labels are checked again once parsed.
        return f'route="{STEP_ROUTE}"' in line and f'method="{STEP_METHOD}"' in line
    return name in _FAMILIES


@dataclass(frozen=True)
class Sample:
    """Both banks' figures at one poll (``at``: monotonic seconds); None for a bank that did not answer."""

    at: float
    banks: Mapping[str, BankFigures | None]

    def outcomes(self) -> dict[str, int | None]:
        """Transfers finished so far, by outcome, as the ledgers count them (None: a bank down)."""
        source, target = self.banks.get("source"), self.banks.get("target")
        return {
            "committed": target.entries["credit"] if target and target.entries else None,
            "compensated": source.entries["reversal"] if source and source.entries else None,
            "failed": source.voids if source else None,
        }

    def in_flight(self) -> int | None:
        """Cents debited at the source and neither credited at the target nor reversed yet."""
        source, target = self.banks.get("source"), self.banks.get("target")
        if not (source and source.cents and target and target.cents):
            return None
        return source.cents["debit"] - source.cents["reversal"] - target.cents["credit"]


@dataclass(frozen=True)
class Point:
    """One sample and what the charts draw for it."""

    sample: Sample
    counts: dict[str, int | None]
    rates: dict[str, float | None]
    in_flight: int | None
    #: Per bank: ``{"p50": ms, "p99": ms, "requests": n}`` over the latency window (None: down).
    latency: dict[str, dict[str, float | None] | None]


def base(
    points: Sequence[Point], present: Callable[[Point], bool], at: float, window: float
) -> Point | None:
    """The point a figure at ``at`` is measured from: the newest at least ``window`` older that has
    the figure (``present(point)``), else the oldest that has it (the ring is younger than that)."""
    oldest = None
    for point in reversed(points):
        if present(point):
            oldest = point
            if at - point.sample.at >= window:
                return point
    return oldest


def rate(older: int | None, newer: int | None, seconds: float) -> float | None:
    """Per second from ``older`` to ``newer``; None without both, or if it went down (a new ledger)."""
    if older is None or newer is None or seconds <= 0 or newer < older:
        return None
    return (newer - older) / seconds


@dataclass
class Charts:
    """The ring of samples and the ``charts`` section of the page's state."""

    size: int = SAMPLES
    rate_window: float = RATE_WINDOW
    latency_window: float = LATENCY_WINDOW
    points: deque[Point] = field(init=False)
    #: Why each bank's last scrape failed (None: it answered).
    errors: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(BANKS))

    def __post_init__(self) -> None:
        self.points = deque(maxlen=self.size)

    def add(self, sample: Sample, errors: Mapping[str, str | None] | None = None) -> Point:
        """Take one poll's sample; its rates and quantiles, measured back from it, are kept with it."""
        if errors is not None:
            self.errors = {name: errors.get(name) for name in BANKS}
        counts = sample.outcomes()
        rates: dict[str, float | None] = {}
        for outcome in OUTCOMES:
            older = base(self.points, _has_count(outcome), sample.at, self.rate_window)
            rates[outcome] = (
                None
                if older is None
                else rate(older.counts[outcome], counts[outcome], sample.at - older.sample.at)
            )
        latency: dict[str, dict[str, float | None] | None] = {}
        for name in BANKS:
            figures = sample.banks.get(name)
            if figures is None:
                latency[name] = None
                continue
            older = base(self.points, _has_bank(name), sample.at, self.latency_window)
            before = older.sample.banks.get(name) if older is not None else None
            if before is None:  # the first answer: nothing to measure from yet
                latency[name] = {"requests": None, **{label: None for label, _ in QUANTILES}}
                continue
            step = figures.step.since(before.step)
            shown: dict[str, float | None] = {"requests": int(step.total)}
            for label, q in QUANTILES:
                seconds = quantile(q, step)
                shown[label] = None if seconds is None else seconds * 1000
            latency[name] = shown
        point = Point(sample, counts, rates, sample.in_flight(), latency)
        self.points.append(point)
        return point

    def section(self, poll_interval: float) -> dict[str, Any]:
        """What the page draws: the series (oldest first; None is a gap) and the figures now."""
        points = list(self.points)
        last = points[-1] if points else None
        now_at = last.sample.at if last else 0.0
        up = {name: [p.sample.banks.get(name) is not None for p in points] for name in BANKS}
        series_latency = {
            name: {
                label: [_round(_latency(p, name, label), 3) for p in points]
                for label, _ in QUANTILES
            }
            for name in BANKS
        }
        in_flight = last.in_flight if last else None
        return {
            "span": round(self.size * poll_interval, 3),
            "rate_window": self.rate_window,
            "latency_window": self.latency_window,
            "t": [round(p.sample.at - now_at, 2) for p in points],
            "up": up,
            "rates": {o: [_round(p.rates[o], 3) for p in points] for o in OUTCOMES},
            "latency_ms": series_latency,
            "in_flight": [p.in_flight for p in points],
            "now": {
                "banks": {
                    name: {
                        "up": bool(last and last.sample.banks.get(name) is not None),
                        "error": self.errors.get(name),
                    }
                    for name in BANKS
                },
                "counts": dict(last.counts) if last else dict.fromkeys(OUTCOMES),
                "rates": {o: _round(last.rates[o], 3) if last else None for o in OUTCOMES},
                "latency": {name: _rounded(last.latency[name]) if last else None for name in BANKS},
                "in_flight": in_flight,
                "in_flight_text": money.format_cents(in_flight) if in_flight is not None else None,
            },
        }


def _has_count(outcome: str) -> Callable[[Point], bool]:
    return lambda point: point.counts[outcome] is not None


def _has_bank(name: str) -> Callable[[Point], bool]:
    return lambda point: point.sample.banks.get(name) is not None


def _latency(point: Point, bank: str, label: str) -> float | None:
    shown = point.latency.get(bank)
    return shown.get(label) if shown else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _rounded(shown: dict[str, float | None] | None) -> dict[str, float | None] | None:
    if shown is None:
        return None
    return {key: _round(value, 3) for key, value in shown.items()}
