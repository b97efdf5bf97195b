"""Start real bank processes (``python -m source_bank``) for the tests.

``bank`` is one shared process for the whole session (tests use fresh ids, so
they do not see each other); ``start_bank`` starts private ones for tests that
kill or restart a bank, or need two processes on one ledger file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator.supervisor import ManagedProcess, free_port

TOKEN = "test-token"


@dataclass
class RunningBank:
    process: ManagedProcess
    url: str
    ledger_path: Path

    def client(self, *, token: str | None = TOKEN, timeout: float = 10.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


StartBank = Callable[..., RunningBank]


@pytest.fixture(scope="session")
def start_bank_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartBank]:
    started: list[ManagedProcess] = []

    def start(
        module: str = "source_bank",
        *,
        ledger_path: Path | None = None,
        token: str | None = TOKEN,
        faults: str | None = "1",
        extra_env: dict[str, str] | None = None,
    ) -> RunningBank:
        directory = tmp_path_factory.mktemp("bank")
        path = ledger_path or directory / "ledger.db"
        port = free_port()
        env = {"PORT": str(port), "HOST": "127.0.0.1", "LEDGER_PATH": str(path)}
        if token is not None:
            env["BANK_TOKEN"] = token
        if faults is not None:
            env["BANK_FAULTS"] = faults
        env.update(extra_env or {})
        url = f"http://127.0.0.1:{port}"
        process = ManagedProcess(
            module,
            env=env,
            health_url=f"{url}/health",
            log_path=directory / "bank.log",
            name=f"{module}:{port}",
        )
        started.append(process)
        process.start(timeout=30)
        return RunningBank(process, url, path)

    yield start
    for process in started:
        process.stop(timeout=5)


@pytest.fixture
def start_bank(start_bank_session: StartBank) -> StartBank:
    return start_bank_session


@pytest.fixture(scope="session")
def bank(start_bank_session: StartBank) -> RunningBank:
    """One source bank with a token and fault injection on, shared by the session."""
    return start_bank_session()


@pytest.fixture
def client(bank: RunningBank) -> Iterator[httpx.Client]:
    with bank.client() as http:
        yield http


@pytest.fixture
def anon(bank: RunningBank) -> Iterator[httpx.Client]:
    """A client without the token."""
    with bank.client(token=None) as http:
        yield http


@pytest.fixture
def faults(client: httpx.Client) -> Iterator[httpx.Client]:
    """The authorised client; every fault rule and hold is cleared afterwards."""
    yield client
    client.delete("/admin/faults").raise_for_status()


def new_id(prefix: str = "id") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def open_account(http: httpx.Client, balance: int, prefix: str = "acct") -> str:
    account_id = new_id(prefix)
    response = http.put(
        f"/accounts/{account_id}", json={"status": "open", "opening_balance": balance}
    )
    assert response.status_code == 201, response.text
    return account_id


def entry(op_id: str, account_id: str, amount: int, kind: str = "debit") -> dict[str, object]:
    return {"op_id": op_id, "account_id": account_id, "amount": amount, "kind": kind}


def balance(http: httpx.Client, account_id: str) -> int:
    response = http.get(f"/accounts/{account_id}")
    assert response.status_code == 200, response.text
    value: int = response.json()["balance"]
    return value


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.fixture
def bank_url(bank: RunningBank) -> str:
    return bank.url
