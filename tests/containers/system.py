"""crossbank as real containers on a private Docker network, for the container tests.

One :class:`ContainerSystem` is one deployment: the promise store (crossbank's, or
Resonate's server on Postgres with ``backend="postgres"``), both banks and any number of workers, started from the built images with testcontainers, each on
its own network so tests never see each other. Tests drive it the way a user does:
the ``crossbank`` CLI runs as a container of the orchestrator image on the same
network, and the banks' fault-injection admin API is called from inside the bank's
own container. Nothing is published on the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from docker.client import from_env
from docker.errors import NotFound
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

IMAGE_TAG = os.environ.get("CROSSBANK_IMAGE_TAG", "dev")
PARTS = ("bank", "promise-store", "orchestrator", "postgres", "prometheus")
TOKEN = "container-test-token"
#: Where the postgres image's entrypoint looks for resonate.sql (deploy/Dockerfile).
RESONATE_SQL_MOUNT = "/etc/resonate/resonate.sql"

Bank = Literal["source", "target"]
Backend = Literal["store", "postgres"]

#: Calls a bank's HTTP API from inside its container: argv = METHOD PATH [BODY].
_BANK_CALL = """
import os, sys, urllib.error, urllib.request
method, path = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
request = urllib.request.Request("http://127.0.0.1:" + os.environ["PORT"] + path, data=body, method=method)
request.add_header("Content-Type", "application/json")
request.add_header("Authorization", "Bearer " + os.environ.get("BANK_TOKEN", ""))
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        sys.stdout.write(response.read().decode())
except urllib.error.HTTPError as exc:
    sys.stdout.write(exc.read().decode())
"""


def image(part: str) -> str:
    return f"crossbank-{part}:{IMAGE_TAG}"


class ContainerTimeout(AssertionError):
    """A container did not reach the state a test waited for."""


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"exit {self.code}\n{self.stdout}{self.stderr}"

    def json(self) -> Any:
        """The JSON document the command printed (``--json``)."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(
                f"the CLI did not print one JSON document:\n{self.output}"
            ) from None

    def documents(self) -> list[Any]:
        """Every JSON document printed, in order (a shell loop of ``--json`` commands)."""
        decoder = json.JSONDecoder()
        found, at = [], 0
        text = self.stdout
        while (at := text.find("{", at)) != -1:
            document, at = decoder.raw_decode(text, at)
            found.append(document)
        return found


class ContainerSystem:
    """Start, kill and restart crossbank's containers; run the CLI against them."""

    def __init__(
        self,
        *,
        lease_ttl: float = 2.0,
        bank_timeout: float = 30.0,
        backend: Backend = "store",
        resonate_sql: Path | None = None,
    ) -> None:
        """``backend="postgres"`` needs ``resonate_sql``, the checked file to mount."""
        if backend == "postgres" and resonate_sql is None:
            raise ValueError("the postgres backend needs the path of resonate.sql")
        self.backend = backend
        self.resonate_sql = resonate_sql
        #: The workers' role's password: made fresh, as a deployment must.
        self.db_password = secrets.token_hex(16)
        self.client = from_env()
        self.network = Network().create()
        self.lease_ttl = lease_ttl
        self.bank_timeout = bank_timeout
        self.containers: list[DockerContainer] = []
        self.store: DockerContainer | None = None
        self.banks: dict[Bank, DockerContainer] = {}
        self.workers: list[DockerContainer] = []

    # -- starting parts ------------------------------------------------------------

    def _start(
        self, part: str, alias: str | None, env: dict[str, str], command: list[str] | None
    ) -> DockerContainer:
        container = DockerContainer(image(part)).with_network(self.network).with_envs(**env)
        if alias is not None:
            container = container.with_network_aliases(alias)
        if command is not None:
            container = container.with_command(command)
        container.start()
        self.containers.append(container)
        return container

    def start_store(self) -> DockerContainer:
        if self.backend == "store":
            env = {"ALLOWED_HOSTS": "promise-store"}
            self.store = self._start("promise-store", "promise-store", env, None)
            return self.store
        assert self.resonate_sql is not None
        store = (
            DockerContainer(image("postgres"))
            .with_network(self.network)
            .with_network_aliases("promise-store")
            .with_env("RESONATE_DB_PASSWORD", self.db_password)
            .with_volume_mapping(self.resonate_sql, RESONATE_SQL_MOUNT, "ro")
        )
        store.start()
        self.containers.append(store)
        self.store = store
        return store

    def start_bank(self, bank: Bank, *, faults: bool = False) -> DockerContainer:
        env = {
            "BANK_TOKEN": TOKEN,
            "BANK_FAULTS": "on" if faults else "off",
            "ALLOWED_HOSTS": f"{bank}-bank",
        }
        started = self._start("bank", f"{bank}-bank", env, ["python3", "-m", f"{bank}_bank"])
        self.banks[bank] = started
        return started

    def store_env(self) -> dict[str, str]:
        """How the workers and the CLI reach this deployment's promise store."""
        if self.backend == "store":
            return {"RESONATE_URL": "http://promise-store:8001"}
        dsn = f"postgresql://crossbank:{self.db_password}@promise-store:5432/resonate"
        return {"RESONATE_PG_DSN": dsn}

    def orchestrator_env(self) -> dict[str, str]:
        return {
            **self.store_env(),
            "SOURCE_BANK_URL": "http://source-bank:5001",
            "TARGET_BANK_URL": "http://target-bank:5001",
            "BANK_TOKEN": TOKEN,
            "LEASE_TTL": str(self.lease_ttl),
            "BANK_TIMEOUT": str(self.bank_timeout),
            # Retries of a step hit a restarted bank soon after it is back.
            "STEP_BACKOFF_MAX": "2",
        }

    def start_worker(self) -> DockerContainer:
        worker = self._start("orchestrator", None, self.orchestrator_env(), ["worker"])
        self.workers.append(worker)
        self.wait_healthy(worker)
        self.wait_for_log(worker, "ready")
        return worker

    def start_all(self, *, workers: int = 1, target_faults: bool = False) -> None:
        """The store and both banks (healthy), then the workers, then the demo accounts."""
        self.start_store()
        self.start_bank("source")
        self.start_bank("target", faults=target_faults)
        assert self.store is not None
        self.wait_healthy(self.store, *self.banks.values())
        for _ in range(workers):
            self.start_worker()
        seeded = self.cli("accounts", "seed")
        assert seeded.code == 0, seeded.output

    # -- waiting -------------------------------------------------------------------

    def wait_healthy(self, *containers: DockerContainer, timeout: float = 90.0) -> None:
        """Until Docker reports every container's HEALTHCHECK as healthy."""
        deadline = time.monotonic() + timeout
        for container in containers:
            wrapped = container.get_wrapped_container()
            while True:
                wrapped.reload()
                state = wrapped.attrs["State"]
                if state.get("Health", {}).get("Status") == "healthy":
                    break
                if state["Status"] == "exited" or time.monotonic() > deadline:
                    raise ContainerTimeout(
                        f"{wrapped.name} is {state['Status']}/{state.get('Health', {}).get('Status')}:\n"
                        + wrapped.logs(tail=30).decode(errors="replace")
                    )
                time.sleep(0.2)

    def wait_for_log(self, container: DockerContainer, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        wrapped = container.get_wrapped_container()
        while text not in wrapped.logs().decode(errors="replace"):
            if time.monotonic() > deadline:
                raise ContainerTimeout(f"{wrapped.name} never logged {text!r}")
            time.sleep(0.2)

    def wait_for_hold(self, op_id: str, timeout: float = 60.0) -> None:
        """Until the target bank has parked a request for ``op_id`` (a hold fault)."""
        deadline = time.monotonic() + timeout
        while op_id not in json.dumps(self.bank_call("target", "GET", "/admin/holds")):
            if time.monotonic() > deadline:
                raise ContainerTimeout(f"no request for {op_id} was parked at the target bank")
            time.sleep(0.2)

    # -- acting ----------------------------------------------------------------------

    def cli(
        self, *args: str, entrypoint: list[str] | None = None, timeout: float = 180.0
    ) -> CliResult:
        """Run the orchestrator image once on the network (``crossbank ARGS --json``)."""
        command = [*args] if entrypoint is not None else [*args, "--json"]
        container = self.client.containers.run(
            image("orchestrator"),
            command=command,
            entrypoint=entrypoint,
            environment=self.orchestrator_env(),
            network=self.network.name,
            detach=True,
        )
        try:
            status = container.wait(timeout=timeout)
            stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
            stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
        finally:
            container.remove(force=True)
        return CliResult(int(status["StatusCode"]), stdout, stderr)

    def bank_call(self, bank: Bank, method: str, path: str, body: Any = None) -> Any:
        """One HTTP call to a bank's API from inside its container, the JSON answer."""
        argv = ["python3", "-c", _BANK_CALL, method, path]
        if body is not None:
            argv.append(json.dumps(body))
        code, output = self.banks[bank].get_wrapped_container().exec_run(argv)
        assert code == 0, output.decode(errors="replace")
        return json.loads(output)

    def kill(self, container: DockerContainer) -> None:
        """SIGKILL the container's process: no shutdown, no flush, nothing graceful."""
        wrapped = container.get_wrapped_container()
        wrapped.kill()
        wrapped.wait(timeout=30)

    def restart(self, container: DockerContainer) -> None:
        """Start a killed container again: the same filesystem and volumes, a new process."""
        container.get_wrapped_container().start()
        self.wait_healthy(container)

    def balances(self) -> dict[str, int]:
        """``bank:account`` -> balance in cents, as the CLI reports it."""
        result = self.cli("balances")
        assert result.code == 0, result.output
        banks = result.json()["banks"]
        return {
            f"{bank}:{row['account_id']}": row["balance"]
            for bank, rows in banks.items()
            for row in rows
        }

    def assert_audit_clean(self) -> dict[str, Any]:
        result = self.cli("audit")
        report = result.json()
        assert result.code == 0, result.output
        assert report["clean"], result.output
        assert report["in_flight"] == [], result.output
        return dict(report)

    def close(self) -> None:
        for container in reversed(self.containers):
            with contextlib.suppress(NotFound):
                container.stop()
        self.network.remove()
        self.client.close()
