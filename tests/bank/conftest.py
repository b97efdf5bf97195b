"""Start real bank processes (``python -m source_bank``) for the tests.

``bank`` is one shared process for the whole session (tests use fresh ids, so
they do not see each other); ``start_bank`` starts private ones for tests that
kill or restart a bank, or need two processes on one ledger file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import requests

from orchestrator.local.supervisor import ManagedProcess, local_url
from orchestrator.local.system import SOURCE, TARGET, LocalSystem
from orchestrator.settings import Settings

TOKEN = "test-token"
#: Seconds a test's call waits for the bank unless it says otherwise.
CALL_TIMEOUT = 10.0


class BankHttp:
    """One bank's HTTP API over a ``requests`` session: paths, a token, a time limit per call."""

    def __init__(self, base_url: str, *, token: str | None, timeout: float) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Writes say JSON unless the caller says otherwise, as every client of a bank must."""
        kwargs.setdefault("timeout", self.timeout)
        if method not in ("GET", "HEAD"):
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        return self._session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> BankHttp:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass
class RunningBank:
    system: LocalSystem
    role: str

    @property
    def process(self) -> ManagedProcess:
        return self.system.part(self.role)

    @property
    def url(self) -> str:
        return local_url(self.system.ports[self.role])

    @property
    def ledger_path(self) -> Path:
        return self.system.data_file(self.role)

    def client(self, *, token: str | None = TOKEN, timeout: float = CALL_TIMEOUT) -> BankHttp:
        return BankHttp(self.url, token=token, timeout=timeout)


StartBank = Callable[..., RunningBank]


@pytest.fixture(scope="session")
def start_bank_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartBank]:
    started: list[LocalSystem] = []

    def start(
        module: str = "source_bank",
        *,
        share_ledger_with: RunningBank | None = None,
        data_dir: Path | None = None,
        token: str | None = TOKEN,
        faults: bool | Sequence[Mapping[str, object]] = True,
        extra_env: dict[str, str] | None = None,
    ) -> RunningBank:
        """A bank alone (``module`` is ``source_bank`` or ``target_bank``) in a new directory.

        ``share_ledger_with`` runs it on that bank's ledger file (a second process);
        ``data_dir`` on the ledger file already there (``source.db`` or ``target.db``).
        """
        role = {"source_bank": SOURCE, "target_bank": TARGET}[module]
        logs = tmp_path_factory.mktemp("bank")
        if share_ledger_with is not None:
            data_dir = share_ledger_with.system.data_dir
        system = LocalSystem(
            data_dir or logs,
            Settings(bank_token=token),
            run=(role,),
            workers=0,
            faults=faults,
            env={role: extra_env or {}},
            log_dir=logs,
        )
        started.append(system)
        system.start()
        return RunningBank(system, role)

    yield start
    for system in started:
        system.stop()


@pytest.fixture
def start_bank(start_bank_session: StartBank) -> StartBank:
    return start_bank_session


@pytest.fixture(scope="session")
def bank(start_bank_session: StartBank) -> RunningBank:
    """One source bank with a token and fault injection on, shared by the session."""
    return start_bank_session()


@pytest.fixture
def client(bank: RunningBank) -> Iterator[BankHttp]:
    with bank.client() as http:
        yield http


@pytest.fixture
def anon(bank: RunningBank) -> Iterator[BankHttp]:
    """A client without the token."""
    with bank.client(token=None) as http:
        yield http


@pytest.fixture
def faults(client: BankHttp) -> Iterator[BankHttp]:
    """The authorised client; every fault rule and hold is cleared afterwards."""
    yield client
    client.delete("/admin/faults").raise_for_status()


def new_id(prefix: str = "id") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def open_account(http: BankHttp, balance: int, prefix: str = "acct") -> str:
    account_id = new_id(prefix)
    response = http.put(
        f"/accounts/{account_id}", json={"status": "open", "opening_balance": balance}
    )
    assert response.status_code == 201, response.text
    return account_id


def entry(op_id: str, account_id: str, amount: int, kind: str = "debit") -> dict[str, object]:
    return {"op_id": op_id, "account_id": account_id, "amount": amount, "kind": kind}


def balance(http: BankHttp, account_id: str) -> int:
    response = http.get(f"/accounts/{account_id}")
    assert response.status_code == 200, response.text
    value: int = response.json()["balance"]
    return value


def error_code(response: requests.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.fixture
def bank_url(bank: RunningBank) -> str:
    return bank.url
