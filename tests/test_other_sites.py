"""No web page can act for the user: what a browser would send for a page on another site is refused.

A page on another origin can POST ``text/plain`` (or a form) to any local
server without asking the browser's permission, and through DNS rebinding
can reach it under a name of its own, with every request then carrying that
name in ``Host``. The local demo's parts run without tokens, so these
requests reach every part of a real local system here, as raw HTTP shaped
the way a browser sends it; each must be refused and leave the ledgers and
the store as they were, while the same calls made properly still work.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from orchestrator.console.config import ConsoleSettings
from orchestrator.console.running import ConsoleThread
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import STORE, TARGET, LocalSystem
from orchestrator.settings import Settings

EVIL_ORIGIN = "http://evil.example"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    root: Path = tmp_path_factory.mktemp("other-sites")
    with LocalSystem(root, Settings(group="other-sites"), workers=0) as running:
        asyncio.run(running.seed({"alice": 1_000}, {"carol": 0}))
        yield running


def send(port: int, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, bytes]:
    """One request as a browser would shape it: ``Host`` and ``Origin`` as given."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in {"Host": f"127.0.0.1:{port}", **headers}.items():
        connection.putheader(name.replace("_", "-"), value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    answer = response.status, response.read()
    connection.close()
    return answer


def credit(op_id: str) -> bytes:
    entry = {"op_id": op_id, "account_id": "carol", "amount": 1_000_000, "kind": "credit"}
    return json.dumps(entry).encode()


def test_a_bank_refuses_what_another_site_sends(system: LocalSystem) -> None:
    port = system.ports[TARGET]
    before = asyncio.run(system.balances())

    # A cross-site POST needs no preflight when its body is text/plain.
    plain = send(port, "POST", "/entries", credit("x-1"), Content_Type="text/plain",
                 Origin=EVIL_ORIGIN)  # fmt: skip
    form = send(port, "POST", "/entries", b"a=1", Origin=EVIL_ORIGIN,
                Content_Type="application/x-www-form-urlencoded")  # fmt: skip
    void = send(port, "POST", "/entries/x-future/void", Origin=EVIL_ORIGIN)
    # DNS rebinding: the page's own name in Host, and JSON is then same-origin.
    rebound = f"evil.example:{port}"
    read = send(port, "GET", "/accounts", Host=rebound)
    write = send(port, "POST", "/entries", credit("x-2"), Host=rebound,
                 Content_Type="application/json")  # fmt: skip

    assert [plain[0], form[0], void[0]] == [415, 415, 415]
    assert [read[0], write[0]] == [400, 400]
    assert b"carol" not in read[1]
    assert asyncio.run(system.balances()) == before
    # The same calls, made properly, work: nothing else was closed off.
    ok = send(port, "POST", "/entries", credit("x-3"), Content_Type="application/json")
    assert ok[0] == 201
    assert send(port, "GET", "/entries/x-future")[0] == 404  # the void never happened


def test_the_store_refuses_what_another_site_sends(system: LocalSystem) -> None:
    port = system.ports[STORE]
    create = json.dumps(
        {
            "kind": "promise.create",
            "head": {"corrId": "c", "version": "1"},
            "data": {"id": "evil-1", "timeoutAt": 2**62, "param": {}, "tags": {}},
        }
    ).encode()
    get = json.dumps(
        {"kind": "promise.get", "head": {"corrId": "g", "version": "1"}, "data": {"id": "evil-1"}}
    ).encode()

    plain = send(port, "POST", "/", create, Content_Type="text/plain", Origin=EVIL_ORIGIN)
    rebound = send(port, "POST", "/", create, Host=f"evil.example:{port}",
                   Content_Type="application/json")  # fmt: skip
    listen = send(port, "GET", "/poll/evil/p", Host=f"evil.example:{port}")

    assert [plain[0], rebound[0], listen[0]] == [415, 400, 400]
    status, body = send(port, "POST", "/", get, Content_Type="application/json")
    assert status == 200
    assert json.loads(body)["head"]["status"] == 404  # nothing was created
    assert send(port, "GET", "/health", Host="anything.example")[0] == 200


def test_the_console_refuses_what_another_site_sends(system: LocalSystem) -> None:
    settings = ConsoleSettings(port=free_port())
    before = asyncio.run(system.balances())
    with ConsoleThread(system.settings, settings) as console:
        port = urlsplit(console.address or "").port or 0
        start = json.dumps({"from": "alice", "to": "carol", "amount": "1.00"}).encode()

        foreign = send(port, "POST", "/api/transfers", start, Origin=EVIL_ORIGIN,
                       Content_Type="application/json")  # fmt: skip
        plain = send(port, "POST", "/api/transfers", start, Content_Type="text/plain")
        rebound_read = send(port, "GET", "/api/state", Host=f"evil.example:{port}")
        rebound_act = send(port, "POST", "/api/transfers", start, Host=f"evil.example:{port}",
                           Origin=f"http://evil.example:{port}",
                           Content_Type="application/json")  # fmt: skip

        assert [foreign[0], plain[0], rebound_read[0], rebound_act[0]] == [403, 415, 400, 400]
        assert b"alice" not in rebound_read[1]
        # From its own page the same action goes through (the refusal was about the site).
        own = send(port, "POST", "/api/transfers", start, Origin=f"http://127.0.0.1:{port}",
                   Content_Type="application/json")  # fmt: skip
        assert own[0] == 200, own  # started; no worker runs here, so nothing moves
    assert asyncio.run(system.balances()) == before
