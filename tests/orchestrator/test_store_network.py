"""The worker's and client's link to the promise store, against the real store process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from resonate_base.error import ConnectorError

from orchestrator.settings import Settings
from orchestrator.store_network import StoreNetwork
from tests.promise_store.conftest import StoreServer

pytestmark = pytest.mark.anyio


def request(kind: str, data: dict[str, object], corr: str = "c-1") -> str:
    return json.dumps({"kind": kind, "head": {"corrId": corr, "version": "1"}, "data": data})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreServer]:
    server = StoreServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
async def network(store: StoreServer) -> AsyncIterator[StoreNetwork]:
    net = StoreNetwork(store.url)
    await net.start()
    yield net
    await net.stop()


async def test_any_protocol_status_is_an_answer(network: StoreNetwork) -> None:
    missing = json.loads(await network.send(request("promise.get", {"id": "nope"})))
    assert missing["head"]["status"] == 404
    body = {"id": "n-1", "timeoutAt": 2**62, "param": {}, "tags": {}}
    created = json.loads(await network.send(request("promise.create", body, corr="c-2")))
    assert (created["head"]["status"], created["head"]["corrId"]) == (201, "c-2")


async def test_concurrent_requests_share_the_link(network: StoreNetwork) -> None:
    bodies = [
        request("promise.create", {"id": f"m-{i}", "timeoutAt": 2**62}, corr=f"m{i}")
        for i in range(64)
    ]
    answers = await asyncio.gather(*(network.send(body) for body in bodies))
    assert [json.loads(a)["head"]["corrId"] for a in answers] == [f"m{i}" for i in range(64)]


async def test_a_request_rides_out_a_store_restart(
    store: StoreServer, network: StoreNetwork
) -> None:
    await network.send(request("promise.get", {"id": "warm"}))  # leaves a kept-alive connection
    await asyncio.to_thread(store.kill)
    sending = asyncio.create_task(
        network.send(request("promise.create", {"id": "r-1", "timeoutAt": 2**62}))
    )
    await asyncio.sleep(0.5)
    assert not sending.done()  # retrying, not failing
    await asyncio.to_thread(store.start)
    answer = json.loads(await asyncio.wait_for(sending, 30))
    assert answer["head"]["status"] == 201
    again = json.loads(await network.send(request("promise.get", {"id": "r-1"})))
    assert again["data"]["promise"]["state"] == "pending"


async def test_stop_ends_a_send_that_is_waiting_for_the_store(
    store: StoreServer, network: StoreNetwork
) -> None:
    await asyncio.to_thread(store.kill)
    sending = asyncio.create_task(network.send(request("promise.get", {"id": "x"})))
    await asyncio.sleep(0.3)
    await network.stop()
    with pytest.raises(ConnectorError):
        await asyncio.wait_for(sending, 5)
    with pytest.raises(ConnectorError):
        await network.send(request("promise.get", {"id": "x"}))


async def test_chunked_and_closing_responses_from_another_server() -> None:
    """Another Resonate server may stream its answer chunked or close after it."""
    replies = [
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{"b": 2}',
        b'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"c": 3}',
    ]
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while replies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            reply = replies.pop(0)
            writer.write(reply)
            await writer.drain()
            if b"close" in reply:
                break
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    net = StoreNetwork(f"http://127.0.0.1:{port}")
    await net.start()
    try:
        assert [await net.send("{}") for _ in range(3)] == ['{"a": 1}', '{"b": 2}', '{"c": 3}']
    finally:
        await net.stop()
        server.close()
    assert connections == 2  # a new connection only after the server closed the first


@pytest.mark.parametrize("url", ["ftp://store:8001", "store:8001", "http://"])
def test_an_unusable_url_is_refused_up_front(url: str) -> None:
    with pytest.raises(ValueError, match="must be an http:// or https:// URL with a host"):
        StoreNetwork(url)


def test_an_https_store_needs_a_tls_context() -> None:
    with pytest.raises(ValueError, match="needs a TLS context"):
        StoreNetwork("https://store:8001")


async def answers_from(replies: list[bytes], requests: int | None = None) -> list[str]:
    """What the link returns for ``requests`` requests (one per reply unless given), from a
    server that sends the next reply on each connection and then closes it."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(replies.pop(0))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    net = StoreNetwork(f"http://127.0.0.1:{port}")
    await net.start()
    try:
        count = len(replies) if requests is None else requests
        return [await asyncio.wait_for(net.send("{}"), 5) for _ in range(count)]
    finally:
        await net.stop()
        server.close()


async def test_a_body_that_ends_with_the_connection_is_read() -> None:
    """No Content-Length and not chunked: the body is everything until the server closes."""
    reply = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"d": 4}'
    assert await answers_from([reply]) == ['{"d": 4}']


async def test_interim_answers_are_skipped() -> None:
    replies = [
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"e": 5}'
    ]
    assert await answers_from(replies) == ['{"e": 5}']


async def test_a_cut_short_body_is_not_an_answer() -> None:
    """A Content-Length body the server closes in the middle of is sent again, not returned."""
    replies = [
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"f":',
        b'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"g": 7}',
    ]
    assert await answers_from(replies, requests=1) == ['{"g": 7}']


def test_https_urls_are_taken_by_the_settings() -> None:
    settings = Settings.from_env(
        {"RESONATE_URL": "https://store:8001", "SOURCE_BANK_URL": "https://bank:5001"}
    )
    assert (settings.resonate_url, settings.source_bank_url) == (
        "https://store:8001",
        "https://bank:5001",
    )
    assert settings.tls_for("https://store:8001") is not None
    assert settings.tls_for(settings.target_bank_url) is None


async def test_a_request_the_store_never_answers_is_sent_again() -> None:
    """After ``STORE_REQUEST_TIMEOUT`` without an answer the request counts as lost and is resent."""
    received: list[bytes] = []

    async def first_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        received.append(await reader.readexactly(length))
        if len(received) == 1:
            await reader.read()  # never answers the first; done when the link gives up on it
            return
        body = b'{"answered": true}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    server = await asyncio.start_server(first_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        timeout = Settings.from_env({"STORE_REQUEST_TIMEOUT": "0.3"}).store_request_timeout
        net = StoreNetwork(f"http://127.0.0.1:{port}", request_timeout=timeout)
        await net.start()
        try:
            answer = await asyncio.wait_for(net.send('{"kind": "x"}'), 5)
        finally:
            await net.stop()
    assert json.loads(answer) == {"answered": True}
    assert received == [b'{"kind": "x"}', b'{"kind": "x"}']
