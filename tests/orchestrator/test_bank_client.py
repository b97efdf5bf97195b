"""The bank client against a real bank process, and against servers that misbehave on purpose.

The saga's safety rests on the client telling an answer's three classes
apart: applied, rejected (a value), unknown (``BankUnavailable``, or
``BankUnreachable`` when no connection could be made). These tests hold the
client to that whatever its HTTP layer is.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from orchestrator.bank_client import (
    BankClient,
    BankError,
    BankUnavailable,
    BankUnreachable,
    Cancellation,
    CancelNote,
    VoidOutcome,
)
from orchestrator.local.supervisor import free_port, local_url
from orchestrator.local.system import SOURCE, LocalSystem
from orchestrator.settings import Settings

pytestmark = pytest.mark.anyio

TOKEN = "client-test-token"


@pytest.fixture(scope="module")
def bank_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("bank-client")
    system = LocalSystem(
        root, Settings(bank_token=TOKEN), run=(SOURCE,), workers=0, faults=True, log_dir=root
    )
    system.start()
    try:
        yield local_url(system.ports[SOURCE])
    finally:
        system.stop()


@pytest.fixture
async def bank(bank_url: str) -> AsyncIterator[BankClient]:
    async with BankClient(bank_url, token=TOKEN, timeout=10.0, name="source") as client:
        yield client


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_applied_rejected_and_fenced_are_told_apart(bank: BankClient) -> None:
    account = fresh("acct")
    created = await bank.put_account(account, "open", opening_balance=1000)
    assert created["account_id"] == account
    op = fresh("op")
    applied = await bank.post_entry(op, account, 300, "debit")
    assert applied.applied
    assert applied.entry is not None
    again = await bank.post_entry(op, account, 300, "debit")  # a replay: the same entry
    assert again.entry == applied.entry
    refused = await bank.post_entry(fresh("op"), account, 10_000, "debit")
    assert (refused.status, refused.entry) == ("rejected", None)
    assert refused.code
    assert (await bank.void(op)).state == "applied"
    never = fresh("op")
    assert (await bank.void(never)).state == "voided"
    assert not (await bank.post_entry(never, account, 1, "debit")).applied
    assert (await bank.get_account(account) or {})["balance"] == 700
    assert await bank.get_account(fresh("nobody")) is None


async def test_pages_of_entries_are_followed_with_their_query(bank: BankClient) -> None:
    account = fresh("acct")
    await bank.put_account(account, "open", opening_balance=1000)
    ops = [fresh("op") for _ in range(5)]
    for op in ops:
        await bank.post_entry(op, account, 1, "debit")
    listed = [entry async for entry in bank.iter_entries(account, page_size=2)]
    assert [entry["op_id"] for entry in listed] == ops
    assert (await bank.get_entry(ops[0]) or {})["state"] == "applied"
    assert account in {a["account_id"] for a in await bank.list_accounts()}


async def test_a_wrong_token_is_a_bank_error_not_an_outcome(bank_url: str) -> None:
    async with BankClient(bank_url, token="wrong", timeout=10.0, name="source") as client:
        with pytest.raises(BankError, match=r"source bank .* answered 401") as raised:
            await client.list_accounts()
    assert not isinstance(raised.value, BankUnavailable)


async def test_a_refused_connection_is_unreachable() -> None:
    async with BankClient(local_url(free_port()), timeout=5.0, name="target") as client:
        with pytest.raises(BankUnreachable, match="target bank"):
            await client.post_entry("op-1", "a", 1, "credit")


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serving(serve: Serve) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


async def test_a_5xx_a_silence_and_a_cut_answer_are_unknown() -> None:
    async def five_hundred(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = b'{"error": {"code": "storage", "message": "disk"}}'
        writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers; done when the client gives up and closes

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"op')
        await writer.drain()
        writer.close()

    for serve, expected in (
        (five_hundred, "answered 503 storage: disk"),
        (silent, "in time"),
        (cut, "unreachable"),
    ):
        server, url = await serving(serve)
        async with server, BankClient(url, timeout=0.5, name="source") as client:
            with pytest.raises(BankUnavailable, match=expected) as raised:
                await client.post_entry("op-1", "a", 1, "debit")
            assert not isinstance(raised.value, BankUnreachable)


async def test_a_chunked_answer_is_read_and_the_connection_kept() -> None:
    requests: list[bytes] = []
    connections = 0

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                requests.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(
                b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'5\r\n{"op_\r\n10\r\nid": "op-1", "x"\r\n4\r\n: 1}\r\n0\r\n\r\n'
            )
            await writer.drain()

    server, url = await serving(chunked)
    async with server, BankClient(url, token="t", timeout=5.0, name="source") as client:
        for _ in range(3):
            outcome = await client.post_entry("op-1", "a b", 1, "debit")
            assert outcome.entry == {"op_id": "op-1", "x": 1}
    assert connections == 1
    first = requests[0].split(b"\r\n")
    assert first[0] == b"POST /entries HTTP/1.1"
    assert b"Authorization: Bearer t" in first
    assert b"Content-Type: application/json" in first


# -- an operator's cancel: a void with a note ------------------------------------------


async def test_a_cancel_note_is_kept_with_the_void_and_read_back(bank: BankClient) -> None:
    account = fresh("acct")
    await bank.put_account(account, "open", opening_balance=100)
    op = fresh("op")
    voided = await bank.void(op, cancel=CancelNote("alice", "customer withdrew"))
    assert voided.state == "voided"
    assert voided.entry is None
    cancelled = voided.cancelled
    assert isinstance(cancelled, Cancellation)
    assert (cancelled.by, cancelled.reason) == ("alice", "customer withdrew")
    assert cancelled.at.endswith("Z")
    # Later voids, with a note or without, answer the first one's note.
    assert await bank.void(op) == voided
    assert await bank.void(op, cancel=CancelNote("bob", "other")) == voided
    refused = await bank.post_entry(op, account, 10, "debit")
    assert (refused.status, refused.entry, refused.code) == ("rejected", None, "cancelled")
    assert refused.message == f"op {op} was cancelled by alice: customer withdrew"
    assert (await bank.get_entry(op) or {})["cancelled"] == {
        "by": "alice",
        "reason": "customer withdrew",
        "at": cancelled.at,
    }
    assert (await bank.get_account(account) or {})["balance"] == 100


async def test_a_cancel_note_changes_no_earlier_outcome(bank: BankClient) -> None:
    account = fresh("acct")
    await bank.put_account(account, "open", opening_balance=100)
    applied = fresh("op")
    entry = (await bank.post_entry(applied, account, 10, "debit")).entry
    late = await bank.void(applied, cancel=CancelNote("alice", "too late"))
    assert late == VoidOutcome("applied", entry=entry)
    fenced = fresh("op")
    assert await bank.void(fenced) == VoidOutcome("voided")
    assert await bank.void(fenced, cancel=CancelNote("alice", "after the fence")) == VoidOutcome(
        "voided"
    )
    refused = await bank.post_entry(fenced, account, 10, "debit")
    assert refused.code == "op_voided"


async def test_a_bad_cancel_note_is_a_bank_error_and_voids_nothing(bank: BankClient) -> None:
    op = fresh("op")
    for note, field in (
        (CancelNote("", "why"), "cancel.by"),
        (CancelNote("alice", "x" * 201), "cancel.reason"),
        (CancelNote("alice", "two\nlines"), "cancel.reason"),
    ):
        with pytest.raises(BankError, match=rf"answered 400 invalid_request: {field}:") as raised:
            await bank.void(op, cancel=note)
        assert not isinstance(raised.value, BankUnavailable)
    assert await bank.get_entry(op) is None


async def test_the_void_sends_a_body_only_with_a_note() -> None:
    bodies: list[bytes] = []
    answers = iter(
        [
            b'{"op_id": "op-1", "state": "voided"}',
            b'{"op_id": "op-1", "state": "voided", "cancelled": '
            b'{"by": "al ice", "reason": "why", "at": "2026-01-31T12:00:00.000000Z"}}',
            b'{"op_id": "op-1", "state": "voided", "cancelled": {"by": "al ice"}}',
        ]
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            bodies.append(await reader.readexactly(length))
            body = next(answers)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    server, url = await serving(answer)
    async with server, BankClient(url, timeout=5.0, name="source") as client:
        assert await client.void("op-1") == VoidOutcome("voided")
        outcome = await client.void("op-1", cancel=CancelNote("al ice", "why"))
        assert outcome.cancelled == Cancellation("al ice", "why", "2026-01-31T12:00:00.000000Z")
        with pytest.raises(BankError, match="malformed cancelled"):
            await client.void("op-1", cancel=CancelNote("al ice", "why"))
    assert bodies[0] == b""
    assert json.loads(bodies[1]) == {"cancel": {"by": "al ice", "reason": "why"}}
