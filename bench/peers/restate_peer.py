"""Restate: its server (the npm package's binary) plus the saga service under hypercorn.

Both run as real processes on loopback ports; the service is registered with
the server's admin API and every transfer is one call to the ingress with the
transfer id as idempotency key. The server journals each step (RocksDB,
fsync on) before the service moves on.

The binary is found in ``RESTATE_SERVER_BIN``, on ``PATH``, or where
``bench/README.md`` installs it (``bench/.peers/restate``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp

from bench.banks import BankUrls
from bench.driver import RunTransfer
from bench.peers import Unavailable
from bench.workload import TransferSpec
from orchestrator.local.supervisor import ManagedProcess, free_port, is_healthy

NPM_BINARY = (
    Path(__file__).resolve().parent.parent
    / ".peers/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"
)


def find_server() -> Path:
    candidates = [os.environ.get("RESTATE_SERVER_BIN"), shutil.which("restate-server"), NPM_BINARY]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise Unavailable(
        "restate-server binary not found: set RESTATE_SERVER_BIN or "
        "`npm install --prefix bench/.peers/restate @restatedev/restate-server`"
    )


def _require_sdk() -> None:
    try:
        import hypercorn  # noqa: F401
        import restate  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"Restate peer needs `restate-sdk` and `hypercorn`: {exc}") from exc


@contextmanager
def _restate_server(binary: Path, base_dir: Path, log: Path) -> Iterator[tuple[str, str]]:
    """Start the server on free loopback ports; yield (ingress URL, admin URL)."""
    ingress, admin, node = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "RESTATE_LISTEN_MODE": "tcp",
        "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node}",
        "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node}",
        "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
        "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
        "RESTATE_DISABLE_TELEMETRY": "true",
        "RESTATE_LOG_FILTER": "warn",
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(binary), "--no-logo", "--base-dir", str(base_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            admin_url = f"http://127.0.0.1:{admin}"
            deadline = time.monotonic() + 60
            while not is_healthy(f"{admin_url}/health"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise Unavailable(f"restate-server did not start (see {log})")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{ingress}", admin_url
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def _register(admin_url: str, service_url: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30.0)) as http:
        async with http.post(
            f"{admin_url}/deployments", json={"uri": service_url, "force": True}
        ) as response:
            if response.status >= 300:
                text = await response.text()
                raise RuntimeError(f"registering {service_url}: {response.status} {text}")
        # The ingress learns of the service asynchronously; wait until it routes to it.
        for _ in range(100):
            async with http.get(f"{admin_url}/services/Transfers") as probe:
                if probe.status == 200:
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError("Restate never listed the Transfers service")


@asynccontextmanager
async def open_restate(banks: BankUrls, workdir: Path) -> AsyncIterator[RunTransfer]:
    _require_sdk()
    binary = find_server()
    base = workdir / "restate"
    shutil.rmtree(base, ignore_errors=True)
    service_port = free_port()
    service = ManagedProcess(
        "hypercorn",
        args=("bench.peers.restate_service:app", "--bind", f"127.0.0.1:{service_port}"),
        env={
            "SOURCE_BANK_URL": banks.source,
            "TARGET_BANK_URL": banks.target,
            "BANK_TOKEN": banks.token or "",
        },
        health_url=f"http://127.0.0.1:{service_port}/health",
        log_path=workdir / "logs" / "restate-service.log",
        name="restate service (hypercorn)",
    )
    with (
        _restate_server(binary, base, workdir / "logs" / "restate-server.log") as (
            ingress,
            admin,
        ),
        service,
    ):
        await _register(admin, f"http://127.0.0.1:{service_port}")
        async with aiohttp.ClientSession(
            base_url=ingress,
            timeout=aiohttp.ClientTimeout(total=60.0),
            connector=aiohttp.TCPConnector(limit=64),
        ) as http:

            async def run(spec: TransferSpec) -> str:
                async with http.post(
                    "/Transfers/run",
                    json={
                        "transfer_id": spec.transfer_id,
                        "source_account": spec.source_account,
                        "target_account": spec.target_account,
                        "amount": spec.amount,
                        "expected_status": spec.expected_status,
                    },
                    headers={"idempotency-key": spec.transfer_id},
                ) as response:
                    response.raise_for_status()
                    return str(await response.json())

            yield run
