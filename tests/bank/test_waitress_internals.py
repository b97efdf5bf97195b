"""The waitress internals ``bank/guarded_server.py`` relies on are still there.

If one of these fails after a waitress upgrade, re-read the internals that
module's docstring lists in the new version before changing anything here:
the bank's connection cap, idle and read deadlines depend on them.
"""

from __future__ import annotations

import inspect
import socket
import time
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, TcpWSGIServer
from waitress.task import ErrorTask

from bank.guarded_server import ConnectionLimits, GuardedChannel, GuardedServer, TimedParser

#: The version whose internals were read; bump it only after re-reading them.
READ_VERSION = "3.0.2"

LIMITS = ConnectionLimits(
    max_connections=2,
    idle_timeout=30,
    header_timeout=1,
    body_timeout=1,
    max_header_bytes=4096,
    max_body_bytes=1024,
)


def test_waitress_is_the_version_whose_internals_were_read() -> None:
    assert version("waitress") == READ_VERSION, (
        "waitress changed: re-read the internals listed in bank/guarded_server.py"
    )


def test_the_overridden_methods_keep_their_signatures() -> None:
    expected = {
        BaseWSGIServer.readable: ["self"],
        BaseWSGIServer.handle_accept: ["self"],
        BaseWSGIServer.maintenance: ["self", "now"],
        HTTPRequestParser.__init__: ["self", "adj"],
        HTTPRequestParser.received: ["self", "data"],
        ErrorTask.execute: ["self"],
    }
    for method, parameters in expected.items():
        assert list(inspect.signature(method).parameters) == parameters, method.__qualname__
    assert callable(ErrorTask.set_close_on_finish)
    assert HTTPChannel.parser_class is HTTPRequestParser
    assert HTTPChannel.error_task_class is ErrorTask
    assert TcpWSGIServer.channel_class is HTTPChannel


def _simple_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def server() -> Iterator[GuardedServer]:
    guarded = GuardedServer(_simple_app, LIMITS, host="127.0.0.1", port=0, threads=1)
    yield guarded
    guarded.task_dispatcher.shutdown()
    wasyncore.close_all(guarded._map)


def _turn(server: GuardedServer, times: int = 5) -> None:
    for _ in range(times):
        wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)


def _channels(server: GuardedServer) -> list[GuardedChannel]:
    return list(server.active_channels.values())


def test_a_channel_exposes_the_state_the_cap_and_deadlines_read(server: GuardedServer) -> None:
    with socket.create_connection(("127.0.0.1", int(server.effective_port))) as sock:
        _turn(server)
        (channel,) = _channels(server)
        assert isinstance(channel, GuardedChannel)
        assert channel.requests == []
        assert channel.request is None
        assert channel.total_outbufs_len == 0
        assert channel.will_close is False
        assert isinstance(channel.creation_time, float)
        assert abs(channel.last_activity - time.time()) < 5
        assert channel.idle()

        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        _turn(server)
        request = channel.request
        assert isinstance(request, TimedParser)
        assert request.headers_finished is False
        assert request.completed is False
        assert request.headers_done is None
        assert not channel.read_overdue(time.monotonic(), LIMITS)
        assert channel.read_overdue(time.monotonic() + 2, LIMITS)


def test_maintenance_closes_a_late_request_on_the_next_turn(server: GuardedServer) -> None:
    with socket.create_connection(("127.0.0.1", int(server.effective_port))) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        _turn(server)
        (channel,) = _channels(server)
        channel.request.started -= 5
        server.next_channel_cleanup = 0
        _turn(server)
        assert _channels(server) == []
        sock.settimeout(2)
        assert sock.recv(100) == b""


def test_at_the_cap_a_new_connection_closes_the_oldest_idle_one(server: GuardedServer) -> None:
    port = int(server.effective_port)
    with (
        socket.create_connection(("127.0.0.1", port)) as first,
        socket.create_connection(("127.0.0.1", port)),
    ):
        _turn(server)
        assert len(_channels(server)) == 2
        with socket.create_connection(("127.0.0.1", port)) as third:
            _turn(server, times=10)
            assert len(_channels(server)) == 2
            first.settimeout(2)
            assert first.recv(100) == b""
            third.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            third.settimeout(0.05)
            answer = b""
            for _ in range(40):
                _turn(server, times=1)
                try:
                    answer += third.recv(4096)
                except TimeoutError:
                    continue
                if b"\r\n\r\nok" in answer:
                    break
            assert answer.startswith(b"HTTP/1.1 200 OK")
