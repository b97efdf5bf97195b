"""The peers' one bank call gives the three outcomes a step needs, against a real bank."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bench.peers import bank_steps
from orchestrator.bank_client import BankClient
from orchestrator.local.supervisor import free_port, local_url
from orchestrator.local.system import SOURCE, LocalSystem
from orchestrator.settings import Settings

pytestmark = pytest.mark.anyio

TOKEN = "steps-test-token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the pool is an asyncio protocol, as every peer runs on asyncio


@pytest.fixture(scope="module")
def bank_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("bank-steps")
    system = LocalSystem(root, Settings(bank_token=TOKEN), run=(SOURCE,), workers=0, log_dir=root)
    system.start()
    try:
        yield local_url(system.ports[SOURCE])
    finally:
        system.stop()


async def test_applied_rejected_and_unknown(bank_url: str) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    async with BankClient(bank_url, token=TOKEN) as admin:
        await admin.put_account(account, "open", opening_balance=100)
    async with bank_steps.client(TOKEN) as http:
        op = f"op-{uuid.uuid4().hex[:8]}"
        applied = await bank_steps.post_entry(http, bank_url, op, account, 60, "debit")
        assert applied == {"outcome": "applied", "code": None}
        again = await bank_steps.post_entry(http, bank_url, op, account, 60, "debit")
        assert again == applied  # the same op id: the same entry, not a second one
        refused = await bank_steps.post_entry(http, bank_url, f"{op}-2", account, 60, "debit")
        assert refused["outcome"] == "rejected"
        assert refused["code"]
    async with BankClient(bank_url, token=TOKEN) as admin:
        assert (await admin.get_account(account) or {})["balance"] == 40
    async with bank_steps.client("wrong") as http:
        unauthorized = await bank_steps.post_entry(http, bank_url, "op-x", account, 1, "debit")
        assert unauthorized["outcome"] == "rejected"
    async with bank_steps.client(TOKEN) as http:
        with pytest.raises(bank_steps.OutcomeUnknown):
            await bank_steps.post_entry(http, local_url(free_port()), "op-y", account, 1, "debit")
