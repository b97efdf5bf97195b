"""Each proxy mode does to a real TCP connection exactly what its fault kind says."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from chaos.proxy import BLACKHOLE, ONEWAY, PARTITION, PASS, RESET, LinkProxy, ProxySet


class EchoServer:
    """Answers each line with the same line upper-cased, and remembers what reached it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a reset from the proxy ends it
            for line in conn.makefile("rb"):
                self.received.append(line)
                conn.sendall(line.upper())


@pytest.fixture
def link() -> Iterator[tuple[ProxySet, LinkProxy, EchoServer]]:
    server = EchoServer()
    proxies = ProxySet()
    try:
        yield proxies, proxies.add("worker-0/store", server.port), server
    finally:
        proxies.close()
        server.listener.close()


def _connect(proxy: LinkProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5)
    sock.settimeout(0.5)
    return sock


def _ask(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    return sock.recv(100)


def _was_reset(sock: socket.socket) -> bool:
    """True when the connection is gone: reset (or closed) instead of answering."""
    try:
        return _ask(sock, b"anyone?\n") == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def _eventually_received(server: EchoServer, line: bytes) -> bool:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if line in server.received:
            return True
        time.sleep(0.02)
    return False


def test_pass_forwards_both_ways(link) -> None:
    _, proxy, _ = link
    with _connect(proxy) as sock:
        assert _ask(sock, b"hello\n") == b"HELLO\n"


def test_partition_stops_open_and_new_connections_both_ways_then_resets_them(link) -> None:
    proxies, proxy, server = link
    old = _connect(proxy)
    assert _ask(old, b"before\n") == b"BEFORE\n"
    proxies.set_mode(proxy.name, PARTITION)
    new = _connect(proxy)  # accepted, as the kernel does, and then nothing
    for sock, line in ((old, b"during-old\n"), (new, b"during-new\n")):
        with pytest.raises(TimeoutError):
            _ask(sock, line)
        assert line not in server.received
    proxies.set_mode(proxy.name, PASS)
    assert _was_reset(old)
    assert _was_reset(new)
    with _connect(proxy) as healed:
        assert _ask(healed, b"healed\n") == b"HEALED\n"


def test_oneway_lets_requests_reach_the_server_but_drops_its_answers(link) -> None:
    proxies, proxy, server = link
    proxies.set_mode(proxy.name, ONEWAY)
    with _connect(proxy) as sock:
        with pytest.raises(TimeoutError):
            _ask(sock, b"write\n")
        assert _eventually_received(server, b"write\n")
    assert proxy.dropped_bytes > 0


def test_blackhole_hangs_every_connection_for_good_and_only_new_ones_work_after(link) -> None:
    proxies, proxy, server = link
    old = _connect(proxy)
    assert _ask(old, b"one\n") == b"ONE\n"
    proxies.set_mode(proxy.name, BLACKHOLE)
    new = _connect(proxy)
    for sock, line in ((old, b"two\n"), (new, b"lost\n")):
        with pytest.raises(TimeoutError):
            _ask(sock, line)
        assert line not in server.received
    proxies.set_mode(proxy.name, PASS)
    for sock in (old, new):  # never answered, never reset: the caller must give up
        with pytest.raises(TimeoutError):
            _ask(sock, b"still there?\n")
        sock.close()
    with _connect(proxy) as healed:
        assert _ask(healed, b"healed\n") == b"HEALED\n"
    assert proxy.hung == 2


def test_reset_resets_open_and_new_connections(link) -> None:
    proxies, proxy, _ = link
    old = _connect(proxy)
    assert _ask(old, b"one\n") == b"ONE\n"
    proxies.set_mode(proxy.name, RESET)
    assert _was_reset(old)
    try:
        new = _connect(proxy)
    except ConnectionResetError:
        pass  # reset before the connect returned
    else:
        assert _was_reset(new)
        new.close()
    assert proxy.resets == 2
    proxies.set_mode(proxy.name, PASS)
    with _connect(proxy) as healed:
        assert _ask(healed, b"four\n") == b"FOUR\n"


def test_an_unknown_mode_is_refused(link) -> None:
    proxies, proxy, _ = link
    with pytest.raises(ValueError, match="proxy mode"):
        proxies.set_mode(proxy.name, "flaky")
    assert proxy.mode == PASS
