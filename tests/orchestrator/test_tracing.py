"""One trace per transfer, from ``crossbank transfer`` through each worker's steps to each bank.

A real OTLP/HTTP receiver (the benchmark's sink, :mod:`bench.otlp_sink`,
decoding here with ``opentelemetry-proto``) takes the spans of the CLI, the workers and both
banks, all configured by the standard ``OTEL_*`` variables only. For a
committed, a compensated and a crash-recovered transfer (its credit held at
the bank, the worker running it SIGKILLed, another taking it over): exactly
one trace each; every bank span is the child of the step span that sent it;
the recovered transfer's steps, from both workers, are in that one trace.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.otlp_sink import OtlpSink
from orchestrator.local.system import SOURCE, TARGET, WORKERS, wait_until
from tests.orchestrator.cluster import TEST_SETTINGS, Cluster, wait_for_hold

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    pid: int
    attributes: dict[str, str]


class Receiver(OtlpSink):
    """An OTLP/HTTP traces endpoint (``POST /v1/traces``, protobuf) keeping every span."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    def took(self, body: bytes) -> None:
        super().took(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            resource.get("service.name", ""),
                            int(resource.get("process.pid", "0")),
                            _attributes(span.attributes),
                        )
                    )
        with self.lock:
            self.spans.extend(spans)

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


def _attributes(pairs: Any) -> dict[str, str]:
    out = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        out[pair.key] = str(getattr(value, kind)) if kind else ""
    return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def otel_env(receiver: Receiver) -> dict[str, str]:
    """What a user sets to send a part's spans to the receiver (flushed every 0.1 s)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


@pytest.fixture
def cluster(tmp_path: Path, receiver: Receiver) -> Iterator[Cluster]:
    env = otel_env(receiver)
    cluster = Cluster(
        tmp_path / "system",
        TEST_SETTINGS,
        workers=1,
        faults=True,
        env={SOURCE: env, TARGET: env, WORKERS: {**env, "LOG_LEVEL": "INFO"}},
    )
    with cluster:
        yield cluster


def crossbank(cluster: Cluster, receiver: Receiver, *args: str) -> dict[str, Any]:
    """``crossbank ARGS --json`` as a user runs it, tracing on; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args, "--json"],
        env={**cluster.worker_env, **otel_env(receiver)},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode in (0, 1), done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def transfer_args(transfer_id: str, target: str, *more: str) -> list[str]:
    return ["transfer", "--id", transfer_id, "--from", "t-src", "--to", target, *more]


def trace_of(spans: list[Span], transfer_id: str) -> list[Span]:
    """Every span of ``transfer_id``'s trace(s): its steps', its banks' and its client's."""
    ids = {
        s.trace_id
        for s in spans
        if s.attributes.get("crossbank.transfer_id") == transfer_id
        or s.attributes.get("crossbank.op_id", "").startswith(f"{transfer_id}-")
    }
    return [s for s in spans if s.trace_id in ids]


async def test_each_transfer_is_one_trace_across_client_workers_and_banks(
    cluster: Cluster, receiver: Receiver
) -> None:
    await cluster.seed({"t-src": 10_000}, {"t-dst": 0, "t-shut": 0})

    committed = await asyncio.to_thread(
        crossbank, cluster, receiver, *transfer_args("tr-ok", "t-dst", "--amount", "1.00")
    )
    assert committed["status"] == "committed"

    async with cluster.banks() as (_, target):
        # Compensated: the target account is closed while the credit is held.
        await target.set_faults([{"action": "hold_before", "op_id": "tr-back-credit"}])
        await asyncio.to_thread(
            crossbank,
            cluster,
            receiver,
            *transfer_args("tr-back", "t-shut", "--amount", "2.00", "--no-wait"),
        )
        await wait_for_hold(target, "tr-back-credit", "before")
        await target.put_account("t-shut", "closed")
        await target.clear_faults()
        compensated = await wait_until(
            lambda: _finished(cluster, "tr-back"), within=60, what="tr-back finished"
        )
        assert compensated["status"] == "compensated"

        # Crash recovery: the credit is held, its worker SIGKILLed, another takes over.
        await target.set_faults([{"action": "hold_before", "op_id": "tr-crash-credit"}])
        started = await asyncio.to_thread(
            crossbank,
            cluster,
            receiver,
            *transfer_args("tr-crash", "t-dst", "--amount", "3.00", "--no-wait"),
        )
        assert started["transfer_id"] == "tr-crash"
        await wait_for_hold(target, "tr-crash-credit", "before")

        async def debit_exported() -> bool:
            return any(
                s.name == "apply_entry" and s.attributes.get("crossbank.kind") == "debit"
                for s in trace_of(receiver.snapshot(), "tr-crash")
            )

        await wait_until(debit_exported, what="the first worker's debit span exported")
        (first,) = cluster.running_workers()
        first.kill()
        await asyncio.to_thread(cluster.start_worker)
        await target.clear_faults()
        record = await wait_until(
            lambda: _finished(cluster, "tr-crash"), within=60, what="tr-crash finished"
        )
        assert record["status"] == "committed"

    async def all_exported() -> bool:
        spans = receiver.snapshot()
        takeover = {s.pid for s in trace_of(spans, "tr-crash") if s.service == "crossbank-worker"}
        # A debit and a credit each; tr-back a reversal too, tr-crash its credit twice
        # (the killed worker's, held, and the one it was taken over with).
        return len(takeover) == 2 and all(
            len([s for s in trace_of(spans, t) if s.service.endswith("-bank")]) >= n
            for t, n in (("tr-ok", 2), ("tr-back", 3), ("tr-crash", 3))
        )

    await wait_until(all_exported, within=30, what="every span exported")
    spans = receiver.snapshot()
    for transfer_id in ("tr-ok", "tr-back", "tr-crash"):
        trace = trace_of(spans, transfer_id)
        assert len({s.trace_id for s in trace}) == 1, f"{transfer_id}: not one trace"
        by_id = {s.span_id: s for s in trace}
        client = [s for s in trace if s.service == "crossbank-client"]
        assert [s.name for s in client] == ["start transfer"], transfer_id
        steps = [s for s in trace if s.service == "crossbank-worker"]
        assert steps, transfer_id
        assert all(s.parent_id == client[0].span_id for s in steps), transfer_id
        for s in steps:
            if "crossbank.kind" in s.attributes:
                assert (
                    s.attributes["crossbank.op_id"]
                    == f"{transfer_id}-{s.attributes['crossbank.kind']}"
                )
        bank_spans = [s for s in trace if s.service.endswith("-bank")]
        assert bank_spans, transfer_id
        orphans = []
        for span in bank_spans:
            assert span.attributes["crossbank.op_id"].startswith(f"{transfer_id}-")
            parent = by_id.get(span.parent_id)
            if parent is None:
                orphans.append(span.attributes["crossbank.op_id"])
            else:
                assert parent.service == "crossbank-worker", span
        # The one request the killed worker had in flight: its step span died with it.
        assert orphans == (["tr-crash-credit"] if transfer_id == "tr-crash" else []), orphans

    names = {s.name for s in trace_of(spans, "tr-back")}
    assert {"begin_compensation", "reverse_debit"} <= names


async def _finished(cluster: Cluster, transfer_id: str) -> dict[str, Any] | None:
    record = await cluster.record(transfer_id)
    return record if record is not None and record["state"] != "pending" else None
