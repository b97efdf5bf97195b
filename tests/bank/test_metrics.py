"""``GET /metrics``: exact counts of what a real bank answered, ledger totals, who may read it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from bank.app import create_app
from bank.config import BankConfig
from bank.ledger import Ledger
from tests.bank.conftest import TOKEN, BankHttp, StartBank, entry, error_code, new_id, open_account

#: One scrape: (sample name, its labels but ``bank``) -> value.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

KINDS = ("debit", "credit", "reversal")


def parse(text: str, bank: str = "source") -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if family.name.startswith("crossbank_bank_"):
                assert labels.pop("bank") == bank, sample
            samples[sample.name, frozenset(labels.items())] = sample.value
    return samples


def scrape(http: BankHttp) -> tuple[str, Samples]:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    return response.text, parse(response.text)


def series(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The samples called ``name``, keyed by the values of the labels ``keys``."""
    found: dict[tuple[str, ...], float] = {}
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            by_name = dict(labels)
            found[tuple(by_name[key] for key in keys)] = value
    return found


def counted(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """As :func:`series`, without the zeros."""
    return {key: value for key, value in series(samples, name, *keys).items() if value}


def ledger_totals(http: BankHttp) -> dict[str, tuple[int, int]]:
    """(number of entries, sum of amounts) per kind, from the ledger's own ``GET /entries``."""
    totals = dict.fromkeys(KINDS, (0, 0))
    after = 0
    while True:
        page = http.get("/entries", params={"after": after, "limit": 1000}).json()
        for stored in page["entries"]:
            count, amount = totals[stored["kind"]]
            totals[stored["kind"]] = (count + 1, amount + stored["amount"])
        if page["next_after"] is None:
            return totals
        after = page["next_after"]


def gauges(samples: Samples) -> dict[str, tuple[int, int]]:
    entries = series(samples, "crossbank_bank_ledger_entries", "kind")
    cents = series(samples, "crossbank_bank_ledger_cents", "kind")
    assert set(entries) == set(cents) == {(kind,) for kind in KINDS}
    return {kind: (int(entries[kind,]), int(cents[kind,])) for kind in KINDS}


def test_counters_show_exactly_what_the_bank_answered(start_bank: StartBank) -> None:
    bank = start_bank(faults=False)
    with bank.client() as http:
        rich = open_account(http, 100, prefix="rich")
        closed = new_id("closed")
        assert http.put(f"/accounts/{closed}", json={"status": "closed"}).status_code == 201
        debit = entry(new_id("debit"), rich, 30)
        too_big = entry(new_id("big"), rich, 500)
        to_closed = entry(new_id("closed-credit"), closed, 10, "credit")
        credit = entry(new_id("credit"), rich, 7, "credit")
        reversal = entry(new_id("reversal"), rich, 5, "reversal")
        fenced = new_id("fenced")

        assert http.post("/entries", json=debit).status_code == 201
        assert http.post("/entries", json=debit).status_code == 200
        assert error_code(http.post("/entries", json=too_big)) == "insufficient_funds"
        assert error_code(http.post("/entries", json=to_closed)) == "account_closed"
        assert http.post("/entries", json=credit).status_code == 201
        assert http.post("/entries", json=reversal).status_code == 201
        assert http.post(f"/entries/{fenced}/void").json()["state"] == "voided"
        assert http.post(f"/entries/{fenced}/void").json()["state"] == "voided"
        assert http.post(f"/entries/{debit['op_id']}/void").json()["state"] == "applied"
        assert error_code(http.post("/entries", json=entry(fenced, rich, 1))) == "op_voided"
        assert error_code(http.post("/entries", json={"op_id": "x"})) == "invalid_request"
        assert http.get(f"/nowhere/{rich}").status_code == 404

        text, samples = scrape(http)

        assert counted(samples, "crossbank_bank_entries_total", "kind", "answer", "code") == {
            ("debit", "applied", ""): 1,
            ("debit", "replayed", ""): 1,
            ("debit", "rejected", "insufficient_funds"): 1,
            ("credit", "rejected", "account_closed"): 1,
            ("credit", "applied", ""): 1,
            ("reversal", "applied", ""): 1,
            ("debit", "voided", ""): 1,
        }
        assert series(samples, "crossbank_bank_voids_total", "answer") == {
            ("voided",): 1,
            ("already_voided",): 1,
            ("applied",): 1,
        }
        requests_seen = counted(samples, "crossbank_bank_request_seconds_count", "route", "method")
        assert requests_seen.pop(("/health", "GET"), None) is not None  # the start's probes
        assert requests_seen == {
            ("/accounts/<account_id>", "PUT"): 2,
            ("/entries", "POST"): 8,  # the invalid one too
            ("/entries/<op_id>/void", "POST"): 3,
            ("unmatched", "GET"): 1,
        }

        assert gauges(samples) == ledger_totals(http)
        assert gauges(samples) == {"debit": (1, 30), "credit": (1, 7), "reversal": (1, 5)}
        assert list(series(samples, "crossbank_bank_ledger_voids").values()) == [1]  # fenced

        # Totals only: no account, no op id, not even in a route.
        for private in (rich, closed, fenced, debit["op_id"], too_big["op_id"], credit["op_id"]):
            assert str(private) not in text
        assert "/nowhere" not in text


def test_ledger_gauges_are_right_after_a_restart(start_bank: StartBank) -> None:
    bank = start_bank(faults=False)
    with bank.client() as http:
        account = open_account(http, 1000)
        for amount in (100, 20, 3):
            assert (
                http.post("/entries", json=entry(new_id("d"), account, amount)).status_code == 201
            )
        assert (
            http.post("/entries", json=entry(new_id("r"), account, 20, "reversal")).status_code
            == 201
        )
    bank.process.kill()
    bank.process.start()
    with bank.client() as http:
        _, samples = scrape(http)
        assert gauges(samples) == {"debit": (3, 123), "credit": (0, 0), "reversal": (1, 20)}
        assert gauges(samples) == ledger_totals(http)
        # The counters began again with the process; the gauges come from the ledger.
        assert counted(samples, "crossbank_bank_entries_total", "kind", "answer", "code") == {}


def test_metrics_needs_the_token_and_a_known_host_like_every_call(
    client: BankHttp, anon: BankHttp
) -> None:
    for path in ("/metrics", "/accounts"):
        refused = anon.get(path)
        assert refused.status_code == 401
        assert error_code(refused) == "unauthorized"
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    foreign = client.get("/metrics", headers={"Host": "evil.example"})
    assert foreign.status_code == 400
    assert error_code(foreign) == "unknown_host"
    assert anon.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200


class UnreadableLedger(Ledger):
    def totals(self) -> dict[str, tuple[int, int]]:
        raise sqlite3.OperationalError("disk I/O error")


def test_an_unreadable_ledger_leaves_out_its_gauges_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    config = BankConfig(name="target", port=0, ledger_path=path, token=TOKEN)
    http = create_app(config, UnreadableLedger(path)).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    void = http.post("/entries/op-1/void", headers={**auth, "Content-Type": "application/json"})
    assert void.status_code == 200
    response = http.get("/metrics", headers=auth)
    assert response.status_code == 200
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert "crossbank_bank_voids" in names
    assert "crossbank_bank_request_seconds" in names
    assert not {name for name in names if name.startswith("crossbank_bank_ledger_")}
    samples = parse(response.text, bank="target")
    assert series(samples, "crossbank_bank_voids_total", "answer")["voided",] == 1
