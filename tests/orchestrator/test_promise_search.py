"""``resonate.promises.search`` answers the same on all three backends: crossbank's store,
served and embedded, and Resonate on Postgres (whose resonate.sql answers 501).

Each test runs on a real served store (a process), a real embedded store (a
file) and a real private Postgres with resonate.sql, through the networks
crossbank uses on each, and makes its promises through the SDK.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from resonate.error import ServerError
from resonate.resonate import Resonate
from resonate.timing import now_ms
from resonate.types import PromiseRecord, Value
from resonate_base import PROTOCOL_VERSION

from orchestrator.local.postgres import PrivatePostgres
from orchestrator.postgres_connection import BoundedSessions, RecoveringConnection
from orchestrator.store_network import StoreNetwork
from promise_store.embedded import EmbeddedStore
from tests.promise_store.conftest import StoreServer

pytestmark = pytest.mark.anyio

#: A client: the Resonate, and the network under it (to see the records as sent).
Client = tuple[Resonate, Any]
Opener = Callable[[], contextlib.AbstractAsyncContextManager[Client]]


@pytest.fixture(params=["served", "embedded", "postgres"])
def open_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a client of a fresh backend of each kind (one store, file or database per test)."""
    where: str = request.param
    server = StoreServer(tmp_path).start() if where == "served" else None
    make_network: Callable[[], Any]
    if server is not None:
        url = server.url

        def make_network() -> Any:
            return StoreNetwork(url, request_timeout=10)
    elif where == "embedded":

        def make_network() -> Any:
            return EmbeddedStore(tmp_path / "promises.db", pid="search", group="search")
    else:
        postgres: PrivatePostgres = request.getfixturevalue("postgres_server")
        dsn = postgres.create_database(f"search_{uuid.uuid4().hex[:12]}")

        def make_network() -> Any:
            return RecoveringConnection(sessions=BoundedSessions(dsn, query_timeout=10))

    @contextlib.asynccontextmanager
    async def client() -> AsyncIterator[Client]:
        network = make_network()
        # The store is its own source; the others are send-only here.
        sources: list[Any] | None = None if where == "embedded" else []
        resonate = Resonate(network=network, sources=sources, pid="search", group="search")
        try:
            yield resonate, network
        finally:
            await resonate.stop()

    try:
        yield client
    finally:
        if server is not None:
            server.stop()


async def search_all(
    resonate: Resonate, state: str | None, tags: dict[str, str], limit: int = 100
) -> list[PromiseRecord]:
    found: list[PromiseRecord] = []
    cursor: str | None = None
    while True:
        page = await resonate.promises.search(state, tags, limit, cursor)
        found += page.promises
        cursor = page.cursor
        if cursor is None:
            return found


def newest_first(records: list[PromiseRecord]) -> list[str]:
    return [r.id for r in sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)]


async def test_search_by_state_and_by_tags_newest_first(open_client: Opener) -> None:
    async with open_client() as (resonate, network):
        far = now_ms() + 600_000
        made = [
            await resonate.promises.create(
                f"p-{i:02d}", far, Value(data=i), {"run": "a", "parity": "odd" if i % 2 else "even"}
            )
            for i in range(12)
        ]
        await resonate.promises.create("elsewhere", far, Value(), {"run": "b"})
        for i in range(4):
            await resonate.promises.resolve(f"p-{i:02d}", Value(data="ok"))
        await resonate.promises.reject("p-04", Value(data="no"))
        await resonate.promises.cancel("p-05", Value(data="stop"))

        everything = await search_all(resonate, None, {"run": "a"})
        assert [r.id for r in everything] == newest_first(made)
        assert {r.id for r in await search_all(resonate, None, {})} == {
            *(r.id for r in made),
            "elsewhere",
        }

        by_state = {
            state: [r.id for r in await search_all(resonate, state, {"run": "a"})]
            for state in ("pending", "resolved", "rejected")
        }
        pending = [f"p-{i:02d}" for i in range(6, 12)]
        assert by_state["pending"] == [i for i in newest_first(made) if i in pending]
        assert sorted(by_state["resolved"]) == ["p-00", "p-01", "p-02", "p-03"]
        assert sorted(by_state["rejected"]) == ["p-04", "p-05"], "rejected and canceled"
        states = {r.id: r.state for r in everything}
        assert (states["p-04"], states["p-05"]) == ("rejected", "rejected_canceled")

        odd = await search_all(resonate, None, {"run": "a", "parity": "odd"})
        assert sorted(r.id for r in odd) == [f"p-{i:02d}" for i in range(1, 12, 2)]
        odd_pending = await search_all(resonate, "pending", {"run": "a", "parity": "odd"})
        assert sorted(r.id for r in odd_pending) == ["p-07", "p-09", "p-11"]
        assert await search_all(resonate, None, {"run": "a", "parity": "neither"}) == []
        assert await search_all(resonate, None, {"run": "a", "absent": ""}) == []

        # Each record is the one promise.get answers, field for field, as sent.
        page = await send(network, "promise.search", {"tags": {"run": "a"}, "limit": 1000})
        assert page["cursor"] is None
        for record in page["promises"]:
            got = await send(network, "promise.get", {"id": record["id"]})
            assert record == got["promise"]
        decoded = {r.id: r for r in everything}
        assert decoded["p-02"].value.data == "ok"
        assert decoded["p-09"].param.data == 9


async def test_pages_stay_stable_while_promises_are_created(open_client: Opener) -> None:
    async with open_client() as (resonate, _):
        far = now_ms() + 600_000
        made = [
            await resonate.promises.create(f"old-{i:02d}", far, Value(), {"run": "paged"})
            for i in range(25)
        ]
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            page = await resonate.promises.search(None, {"run": "paged"}, 7, cursor)
            pages.append([r.id for r in page.promises])
            for n in range(3):  # newer than every page still to come
                await resonate.promises.create(
                    f"zz-new-{len(pages)}-{n}", far, Value(), {"run": "paged"}
                )
            cursor = page.cursor
            if cursor is None:
                break
        assert [len(p) for p in pages] == [7, 7, 7, 4]
        assert [i for p in pages for i in p] == newest_first(made)

        first = await resonate.promises.search(None, {"run": "paged"}, 12, None)
        assert all(r.id.startswith("zz-new-") for r in first.promises), "the new ones come first"
        assert first.cursor is not None


@pytest.mark.parametrize(
    ("state", "tags", "limit", "cursor", "named"),
    [
        ("done", None, None, None, "'done'"),
        ("rejected_canceled", None, None, None, "'rejected_canceled'"),
        (None, {"run": 1}, None, None, "1"),
        (None, {"run": None}, None, None, "None"),
        (None, ["run"], None, None, "['run']"),
        (None, None, 0, None, "0"),
        (None, None, 1001, None, "1001"),
        (None, None, -5, None, "-5"),
        (None, None, "10", None, "'10'"),
        (None, None, None, "not a cursor", "'not a cursor'"),
        (None, None, None, "eyJub3BlIjogMX0", "'eyJub3BlIjogMX0'"),  # base64 JSON, not a position
        (None, None, None, "WzEsMiwzXQ", "'WzEsMiwzXQ'"),  # [1,2,3]
        (None, None, None, 17, "17"),
    ],
)
async def test_a_bad_search_is_refused_with_400_naming_what(
    open_client: Opener, state: Any, tags: Any, limit: Any, cursor: Any, named: str
) -> None:
    async with open_client() as (resonate, _):
        with pytest.raises(ServerError) as refused:
            await resonate.promises.search(state, tags, limit, cursor)
    assert refused.value.code == 400, refused.value
    assert named in refused.value.message, refused.value.message


async def test_postgres_search_needs_select_on_the_promises_table(
    postgres_server: PrivatePostgres,
) -> None:
    """resonate.sql's least-privilege role may not read the table: a 403 that names the grant."""
    database = f"search_{uuid.uuid4().hex[:12]}"
    owner_dsn = postgres_server.create_database(database)
    with psycopg.connect(owner_dsn, autocommit=True) as owner:
        owner.execute(
            "DO $$ BEGIN CREATE ROLE searcher LOGIN IN ROLE resonate_worker; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    dsn = f"postgresql://searcher@127.0.0.1:{postgres_server.port}/{database}"
    connection = RecoveringConnection(sessions=BoundedSessions(dsn, query_timeout=10))
    try:
        refused = await send(connection, "promise.search", {}, status=403)
        assert "GRANT SELECT ON resonate.promises" in refused["error"]
        with psycopg.connect(owner_dsn, autocommit=True) as owner:
            owner.execute("GRANT SELECT ON resonate.promises TO searcher")
        assert await send(connection, "promise.search", {}) == {"promises": [], "cursor": None}
    finally:
        await connection.stop()


async def send(network: Any, kind: str, data: dict[str, Any], status: int = 200) -> Any:
    """One request as the SDK sends it, and the answer's data as it came back."""
    corr_id = uuid.uuid4().hex
    envelope = {
        "kind": kind,
        "head": {"corrId": corr_id, "version": PROTOCOL_VERSION},
        "data": data,
    }
    answer = msgspec.json.decode(await network.send(msgspec.json.encode(envelope).decode()))
    assert answer["kind"] == kind
    assert answer["head"]["corrId"] == corr_id
    assert answer["head"]["status"] == status, answer
    return answer["data"]
