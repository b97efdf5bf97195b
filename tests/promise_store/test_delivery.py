"""Routing of execute/unblock messages to SSE listeners (pure, in-process)."""

from __future__ import annotations

import asyncio

from promise_store.delivery import Address, Listener, Mailboxes, parse_address


def drain(listener: Listener) -> list[str]:
    out = []
    while not listener.queue.empty():
        item = listener.queue.get_nowait()
        if item is not None:
            out.append(item.payload)
    return out


def test_addresses_are_read_as_the_sdk_mints_them() -> None:
    assert parse_address("poll://uni@workers/7f3a") == Address(False, "workers", "7f3a")
    assert parse_address("poll://any@workers") == Address(True, "workers", None)
    assert parse_address("poll://any@workers/p2") == Address(True, "workers", "p2")
    for bad in ("poll://uni@workers", "local://any@workers", "poll://workers/1", "nonsense", ""):
        assert parse_address(bad) is None, bad


def test_anycast_goes_to_one_listener_in_turn_and_unicast_to_its_pid() -> None:
    async def run() -> None:
        boxes = Mailboxes()
        a, b = boxes.connect("workers", "a"), boxes.connect("workers", "b")
        other = boxes.connect("clients", "c")
        for n in range(4):
            boxes.route("poll://any@workers", f"m{n}")
        boxes.route("poll://uni@clients/c", "u")
        assert sorted(drain(a) + drain(b)) == ["m0", "m1", "m2", "m3"]
        assert drain(other) == ["u"]

    asyncio.run(run())


def test_mail_for_absent_listeners_is_held_until_one_connects() -> None:
    async def run() -> None:
        boxes = Mailboxes()
        boxes.route("poll://any@workers", "work")
        boxes.route("poll://uni@clients/c1", "result")
        assert boxes.held_count() == 2
        worker = boxes.connect("workers", "w1")
        assert drain(worker) == ["work"]
        client = boxes.connect("clients", "c1")
        assert drain(client) == ["result"]
        assert boxes.held_count() == 0

    asyncio.run(run())


def test_undelivered_mail_of_a_disconnected_listener_goes_to_a_peer() -> None:
    async def run() -> None:
        boxes = Mailboxes()
        gone = boxes.connect("workers", "gone")
        boxes.route("poll://any@workers", "work")
        peer = boxes.connect("workers", "peer")
        boxes.disconnect(gone, [])
        assert drain(peer) == ["work"]

    asyncio.run(run())


def test_held_mail_is_bounded() -> None:
    boxes = Mailboxes(max_held=3, max_addresses=2)
    for n in range(5):
        boxes.route("poll://uni@c/1", f"m{n}")
    assert boxes.held_count() == 3
    boxes.route("poll://uni@c/2", "x")
    boxes.route("poll://uni@c/3", "y")
    assert boxes.held_count() == 2
