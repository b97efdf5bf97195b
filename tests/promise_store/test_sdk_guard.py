"""Fail loudly when an SDK upgrade changes what the promise store builds on.

The store journals inputs to ``resonate.connections.local.ServerState`` and
replays them, snapshots its fields, speaks its envelopes and routes its
messages. Each test pins one of those dependencies; if one fails after an
upgrade, re-read the SDK's ``connections/local.py`` before touching the pin.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import msgspec
import pytest
from resonate.connections.local import (
    PENDING_RETRY_TTL,
    DurablePromise,
    PTimeout,
    ScheduleStub,
    ServerState,
    Task,
    TTimeout,
    unwrap_request_envelope,
    wrap_response_envelope,
)
from resonate.error import ServerError
from resonate.heartbeat import AsyncHeartbeat
from resonate.resonate import Resonate
from resonate.transport import ExecuteMsg, Message, UnblockMsg
from resonate_base import PROTOCOL_VERSION
from resonate_base.connections import Network, Source

from promise_store.embedded import EmbeddedStore
from promise_store.rules import KNOWN_KINDS


def test_the_sdk_is_the_pinned_version() -> None:
    assert version("resonate-sdk") == "0.8.1"
    assert version("resonate-base") == "0.8.0"
    assert PROTOCOL_VERSION == "2026-04-01"


def test_server_state_has_the_fields_snapshots_save() -> None:
    state = ServerState()
    assert set(vars(state)) == {
        "promises",
        "tasks",
        "schedules",
        "p_timeouts",
        "t_timeouts",
        "outgoing",
    }
    assert DurablePromise.__struct_fields__ == (
        "id",
        "state",
        "param",
        "value",
        "tags",
        "timeout_at",
        "created_at",
        "settled_at",
        "awaiters",
        "subscribers",
    )
    assert Task.__struct_fields__ == ("id", "state", "version", "pid", "ttl", "resumes")
    assert PTimeout.__struct_fields__ == ("id", "timeout")
    assert TTimeout.__struct_fields__ == ("id", "typ", "timeout")
    assert ScheduleStub.__struct_fields__ == (
        "id",
        "cron",
        "promise_id",
        "promise_timeout",
        "promise_param",
        "promise_tags",
        "created_at",
    )


def test_apply_and_tick_take_an_explicit_clock() -> None:
    # Replay is exact only because both take `now` as an argument.
    assert list(inspect.signature(ServerState.apply).parameters) == ["self", "now", "req"]
    assert list(inspect.signature(ServerState.tick).parameters) == ["self", "now"]
    source = inspect.getsource(ServerState)
    assert "time.time" not in source
    assert "now_ms()" not in source
    assert "random" not in source


def test_the_request_kinds_are_the_ones_the_store_knows() -> None:
    dispatched = set(re.findall(r'if kind == "([a-z_.]+)":', inspect.getsource(ServerState.apply)))
    assert dispatched == set(KNOWN_KINDS)
    with pytest.raises(ServerError) as unknown:
        ServerState().apply(0, {"kind": "promise.explode"})
    assert unknown.value.code == 400


def test_only_promise_get_auto_times_out_among_reads() -> None:
    # rules.request_changes_state skips schedule.get/search and checks promise.get.
    source = inspect.getsource(ServerState.apply)
    assert 'if kind in ("promise.get", "promise.create", "promise.settle"):' in source
    for read in ("schedule.get", "schedule.search"):
        assert f'"{read}"' not in source.split("if kind == ")[0]


def test_tick_conditions_match_the_store_predicate() -> None:
    source = inspect.getsource(ServerState.tick)
    assert 'p is not None and p.state == "pending"' in source
    assert "if tt.typ == 1:" in source
    assert 't is not None and t.state == "acquired"' in source
    assert "elif tt.typ == 0:" in source
    assert 't is not None and t.state == "pending"' in source
    assert PENDING_RETRY_TTL == 30_000


def test_envelope_helpers_keep_their_shape() -> None:
    flat = unwrap_request_envelope(
        {"kind": "promise.get", "head": {"corrId": "c1", "version": "v"}, "data": {"id": "p"}}
    )
    assert flat == {"id": "p", "kind": "promise.get", "corrId": "c1"}
    wrapped = wrap_response_envelope(
        {"kind": "promise.get", "corrId": "c1", "status": 404, "error": "x"}
    )
    assert wrapped == {
        "kind": "promise.get",
        "head": {"corrId": "c1", "status": 404, "version": PROTOCOL_VERSION},
        "data": {"error": "x"},
    }


def test_outgoing_messages_decode_as_the_sdk_expects() -> None:
    state = ServerState()
    state.apply(
        0,
        {
            "kind": "promise.create",
            "id": "root",
            "timeoutAt": 10_000,
            "param": {},
            "tags": {"resonate:target": "poll://any@workers"},
        },
    )
    [execute] = state.outgoing
    assert execute.address == "poll://any@workers"
    decoded = msgspec.json.decode(msgspec.json.encode(execute.message), type=Message)
    assert isinstance(decoded, ExecuteMsg)
    assert (decoded.task_id, decoded.version) == ("root", 0)

    state.apply(
        0, {"kind": "promise.register_listener", "awaited": "root", "address": "poll://uni@c/1"}
    )
    state.apply(1, {"kind": "promise.settle", "id": "root", "state": "resolved", "value": {}})
    [unblock] = state.outgoing
    assert unblock.address == "poll://uni@c/1"
    decoded = msgspec.json.decode(msgspec.json.encode(unblock.message), type=Message)
    assert isinstance(decoded, UnblockMsg)
    assert decoded.promise.id == "root"


def test_embedded_store_is_a_heartbeated_network_and_source(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "guard.db")
    try:
        assert isinstance(store, Network)
        assert isinstance(store, Source)
        resonate = Resonate(network=store, ttl=timedelta(seconds=5), autostart=False)
        # Not a LocalConnection, so leases are renewed (see promise_store.embedded).
        assert isinstance(resonate._heartbeat, AsyncHeartbeat)
    finally:
        asyncio.run(store.stop())


def test_a_client_can_ask_again_about_the_results_it_waits_for() -> None:
    """``orchestrator.runtime.ask_again`` does what the SDK's refresh loop does, at once."""
    for method in ("_observe", "_settle_and_cleanup", "_settle_subscription_gone", "_run_refresh"):
        assert callable(getattr(Resonate, method, None)), method
    source = inspect.getsource(Resonate._run_refresh)
    for used in ("self._runtime.subs.items()", "sub.settled()", "self._observe(id)"):
        assert used in source, used


def test_a_client_can_let_its_background_work_finish_before_it_stops() -> None:
    """``orchestrator.runtime.close_resonate`` waits on the tasks ``_spawn`` keeps, then stops."""
    spawn = inspect.getsource(Resonate._spawn)
    assert "self._runtime.bg_tasks" in spawn
    stop = inspect.getsource(Resonate.stop)
    assert "bg_tasks" in stop
