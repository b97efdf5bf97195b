"""The served store's HTTP layer, spoken to over real sockets by clients of several kinds.

The SDK's aiohttp client, urllib and http.client already talk to it in the
other tests; these pin the framing a client relies on: keep-alive, ordered
answers to pipelined requests, chunked bodies in and out, a body-size limit
that leaves the connection usable, and a clean 400 for garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest

from promise_store.http import Request, Response, Server, Stream
from tests.promise_store.conftest import StoreServer
from tests.promise_store.test_served import envelope

JSON = {"Content-Type": "application/json"}


def connect(server: StoreServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def answer(conn: http.client.HTTPConnection) -> tuple[int, dict[str, Any]]:
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def raw_exchange(server: StoreServer, data: bytes) -> bytes:
    """Send ``data`` on a fresh socket and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def post_head(body: bytes, extra: str = "") -> bytes:
    return (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode()


def test_one_connection_carries_many_requests(server: StoreServer) -> None:
    conn = connect(server)
    for i in range(20):
        body = envelope("promise.create", {"id": f"k-{i}", "timeoutAt": 2**62}, corr=f"c{i}")
        conn.request("POST", "/", body, JSON)
        status, reply = answer(conn)
        assert (status, reply["head"]["status"], reply["head"]["corrId"]) == (200, 201, f"c{i}")
    conn.close()


def test_pipelined_requests_are_answered_in_order(server: StoreServer) -> None:
    bodies = [envelope("promise.get", {"id": "nope"}, corr=f"p{i}") for i in range(5)]
    last = post_head(bodies[-1], "Connection: close\r\n") + bodies[-1]
    raw = raw_exchange(server, b"".join(post_head(b) + b for b in bodies[:-1]) + last)
    corr_ids = [part.split(b'"corrId":"')[1].split(b'"')[0] for part in raw.split(b"HTTP/1.1 ")[1:]]
    assert corr_ids == [b"p0", b"p1", b"p2", b"p3", b"p4"]


def test_a_chunked_request_body_is_read_whole(server: StoreServer) -> None:
    body = envelope("promise.create", {"id": "chunked-1", "timeoutAt": 2**62})
    half = len(body) // 2
    framed = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        half,
        body[:half],
        len(body) - half,
        body[half:],
    )
    head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    raw = raw_exchange(server, head + framed)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"status":201' in raw


def test_too_large_a_body_is_refused_before_it_is_read(server: StoreServer) -> None:
    """Its Content-Length says enough: the store answers without waiting for the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(post_head(b"x" * (2 << 20)))
        refused = read_until_closed(sock)
    assert refused.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in refused
    assert b"exceeds" in refused
    conn = connect(server)  # the store is unharmed
    conn.request("POST", "/", envelope("promise.get", {"id": "nope"}), JSON)
    assert answer(conn)[1]["head"]["status"] == 404
    conn.close()


def test_too_large_a_chunked_body_is_refused_once_it_passes_the_limit(
    server: StoreServer,
) -> None:
    chunk = b"x" * (256 << 10)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(5):  # 1.25 MiB, and the body never ends
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        refused = read_until_closed(sock)
    assert refused.startswith(b"HTTP/1.1 413 ")


def test_expect_continue_is_honoured(server: StoreServer) -> None:
    body = envelope("promise.get", {"id": "nope"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post_head(body, "Expect: 100-continue\r\nConnection: close\r\n"))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        rest = read_until_closed(sock)
    assert b'"status":404' in rest


def test_expect_continue_waits_for_the_token_check(
    server_factory: Callable[..., StoreServer],
) -> None:
    server = server_factory(RESONATE_TOKEN="secret").start()
    body = envelope("promise.get", {"id": "nope"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(post_head(body, "Expect: 100-continue\r\n"))
        assert read_until_closed(sock).startswith(b"HTTP/1.1 401 ")


def test_expect_continue_waits_for_the_size_check(server: StoreServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(post_head(b"x" * (2 << 20), "Expect: 100-continue\r\n"))
        assert read_until_closed(sock).startswith(b"HTTP/1.1 413 ")


def test_expect_continue_never_overtakes_an_earlier_answer(server: StoreServer) -> None:
    first = envelope("promise.get", {"id": "nope"}, corr="first")
    second = envelope("promise.get", {"id": "nope"}, corr="second")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            post_head(first)
            + first
            + post_head(second, "Expect: 100-continue\r\nConnection: close\r\n")
        )
        seen = b""
        while b"100 Continue" not in seen:
            chunk = sock.recv(65536)
            assert chunk, f"closed before 100 Continue: {seen!r}"
            seen += chunk
        sock.sendall(second)
        seen += read_until_closed(sock)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", seen) == [b"200", b"100", b"200"]
    assert seen.index(b'"corrId":"first"') < seen.index(b"100 Continue")


def test_no_stray_continue_after_a_body_sent_without_waiting(server: StoreServer) -> None:
    """A pipelined request whose body came at once is owed no 100 Continue, before or after."""
    first = envelope("promise.get", {"id": "nope"}, corr="first")
    second = envelope("promise.get", {"id": "nope"}, corr="second")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        # One write: the second request's head and body arrive together, behind the first.
        sock.sendall(
            post_head(first) + first + post_head(second, "Expect: 100-continue\r\n") + second
        )
        raw = b""
        while raw.count(b'"corrId"') < 2:
            raw += sock.recv(65536)
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            raw += sock.recv(65536)  # anything sent after the last answer
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", raw) == [b"200", b"200"]


def test_expect_continue_is_never_sent_to_http_1_0(server: StoreServer) -> None:
    body = envelope("promise.get", {"id": "nope"})
    head = post_head(body, "Expect: 100-continue\r\n").replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    raw = raw_exchange(server, head + body)
    assert b"100 Continue" not in raw
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")


def test_head_answers_carry_no_body_so_the_next_answer_is_intact(server: StoreServer) -> None:
    raw = raw_exchange(
        server,
        b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    head, after_head = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 16" in head  # what GET would send
    assert after_head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert after_head.endswith(b'{"status": "ok"}')


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 405),
        ("POST", "/health", 405),
        ("GET", "/nowhere", 404),
        ("GET", "/poll/only-a-group", 404),
        ("HEAD", "/health", 200),
    ],
)
def test_routes_and_methods(server: StoreServer, method: str, path: str, status: int) -> None:
    conn = connect(server)
    conn.request(method, path)
    response = conn.getresponse()
    response.read()
    assert response.status == status
    conn.close()


def test_garbage_gets_400_and_a_closed_connection(server: StoreServer) -> None:
    raw = raw_exchange(server, b"BLAH\x00 / HTTP/9\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in raw
    # The store is unharmed.
    conn = connect(server)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200


def test_events_stream_as_chunked_server_sent_events(server: StoreServer) -> None:
    conn = connect(server)
    conn.request("GET", "/poll/http-test/p-1")
    stream = conn.getresponse()
    assert stream.status == 200
    assert stream.getheader("Content-Type") == "text/event-stream"
    assert stream.getheader("Transfer-Encoding") == "chunked"
    assert stream.readline() == b": connected\n"
    # A task for the group is pushed to the listener as one ``data:`` line.
    create = envelope(
        "promise.create",
        {
            "id": "sse-1",
            "timeoutAt": 2**62,
            "param": {},
            "tags": {"resonate:target": "poll://any@http-test"},
        },
    )
    other = connect(server)
    other.request("POST", "/", create, JSON)
    answer(other)
    while (line := stream.readline()) == b"\n":
        pass
    assert line.startswith(b"data: ")
    assert json.loads(line[len(b"data: ") :])["kind"] == "execute"
    conn.close()


# -- a client that goes away mid-request (in process, with handlers that wait) --------


async def _serve_until_client_leaves(streaming: bool) -> tuple[bool, bool]:
    """Start a handler, drop the client while it runs; report (finished, cancelled)."""
    started, release = asyncio.Event(), asyncio.Event()
    outcome = {"finished": False, "cancelled": False}

    async def handler(request: Request, stream: Stream) -> Response | None:
        started.set()
        try:
            if streaming:
                await stream.start(200, {"Content-Type": "text/event-stream"})
            await release.wait()
        except asyncio.CancelledError:
            outcome["cancelled"] = True
            raise
        outcome["finished"] = True
        return None if streaming else Response(200, b"{}")

    server = Server(handler)
    port = await server.start("127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /poll/g/p HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await asyncio.wait_for(started.wait(), 5)
    writer.close()
    await asyncio.sleep(0.2)  # the server notices the client is gone
    release.set()
    await asyncio.sleep(0.1)
    server.stop_listening()
    server.close_connections()
    return outcome["finished"], outcome["cancelled"]


def test_a_request_being_handled_finishes_after_its_client_leaves() -> None:
    """Its state change may be applied already; the messages it produced must still be routed."""
    assert asyncio.run(_serve_until_client_leaves(streaming=False)) == (True, False)


def test_an_event_stream_ends_when_its_client_leaves() -> None:
    assert asyncio.run(_serve_until_client_leaves(streaming=True)) == (False, True)
