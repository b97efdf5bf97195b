"""compose.yaml itself: valid for the Compose tools at hand, and a working system when up."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.client import from_env

from orchestrator.local.certs import make_set
from orchestrator.local.supervisor import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
POSTGRES_OVERRIDE = ROOT / "compose.postgres.yaml"
TLS_OVERRIDE = ROOT / "compose.tls.yaml"
OBSERVE_OVERRIDE = ROOT / "compose.observe.yaml"
SERVICES_UP = ("promise-store", "source-bank", "target-bank", "worker", "console")
#: compose.yaml refuses to run without these (a guessable token lets anyone mint money).
TOKENS = {"BANK_TOKEN": "compose-test-bank-token", "RESONATE_TOKEN": "compose-test-store-token"}
BOTH_FILES = ("-f", str(COMPOSE_FILE), "-f", str(POSTGRES_OVERRIDE))
#: ... and compose.postgres.yaml without these as well.
POSTGRES_SETTINGS = {
    "RESONATE_DB_PASSWORD": "compose-test-db-password",
    "RESONATE_SQL": "../shared/third_party/resonate-pg/resonate.sql",
}


def compose_commands() -> list[list[str]]:
    """Every Compose on this machine: v2 (``docker compose``) and/or v1 (``docker-compose``)."""
    found = []
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        found.append([docker, "compose"])
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    return found


def compose_or_skip() -> list[str]:
    commands = compose_commands()
    if not commands:
        pytest.skip("neither `docker compose` (v2) nor `docker-compose` (1.29) is installed")
    return commands[0]


@pytest.mark.parametrize(
    "files",
    [
        [COMPOSE_FILE],
        [COMPOSE_FILE, POSTGRES_OVERRIDE],
        [COMPOSE_FILE, TLS_OVERRIDE],
        [COMPOSE_FILE, TLS_OVERRIDE, POSTGRES_OVERRIDE],
        [COMPOSE_FILE, OBSERVE_OVERRIDE],
        [COMPOSE_FILE, POSTGRES_OVERRIDE, OBSERVE_OVERRIDE],
    ],
    ids=["compose", "postgres", "tls", "tls-postgres", "observe", "postgres-observe"],
)
def test_compose_files_are_valid_for_every_compose_installed(files: list[Path]) -> None:
    commands = compose_commands()
    if not commands:
        pytest.skip("neither `docker compose` (v2) nor `docker-compose` (1.29) is installed")
    args = [arg for file in files for arg in ("-f", str(file))]
    for command in commands:
        checked = subprocess.run(
            [*command, *args, "config", "-q"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **TOKENS, **POSTGRES_SETTINGS},
        )
        assert checked.returncode == 0, f"{' '.join(command)} rejects {files}: {checked.stderr}"


def test_postgres_override_puts_the_orchestrator_on_postgres_and_starts_nothing_unused() -> None:
    command = compose_or_skip()
    env = {**os.environ, **TOKENS, **POSTGRES_SETTINGS}

    def config(*args: str) -> str:
        return subprocess.run(
            [*command, *BOTH_FILES, "config", *args],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout

    services = set(config("--services").split())
    assert services == {*SERVICES_UP, "orchestrator"}, "an unused service would start"
    merged = config()
    assert "image: crossbank-postgres:" in merged
    dsn = "RESONATE_PG_DSN: postgresql://crossbank:compose-test-db-password@promise-store:8001/"
    assert merged.count(dsn) == 3, "the worker, the CLI and the console are on Postgres"
    assert "RESONATE_URL: http" not in merged, "one backend at a time"


@pytest.mark.parametrize("missing", sorted(POSTGRES_SETTINGS))
def test_postgres_override_refuses_to_run_without_each_setting(
    missing: str, tmp_path: Path
) -> None:
    no_env_file = tmp_path / "empty.env"
    no_env_file.write_text("")
    command = compose_or_skip()
    env = {name: value for name, value in os.environ.items() if name not in POSTGRES_SETTINGS}
    env.update(TOKENS)
    env.update({name: value for name, value in POSTGRES_SETTINGS.items() if name != missing})
    checked = subprocess.run(
        [*command, "--env-file", str(no_env_file), *BOTH_FILES, "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert checked.returncode != 0, f"compose ran without {missing}"
    assert missing in checked.stderr, checked.stderr


@pytest.mark.parametrize("missing", sorted(TOKENS))
def test_compose_refuses_to_run_without_each_token(missing: str, tmp_path: Path) -> None:
    no_env_file = tmp_path / "empty.env"
    no_env_file.write_text("")
    commands = compose_commands()
    if not commands:
        pytest.skip("neither `docker compose` (v2) nor `docker-compose` (1.29) is installed")
    env = {name: value for name, value in os.environ.items() if name not in TOKENS}
    env.update({name: value for name, value in TOKENS.items() if name != missing})
    for command in commands:
        checked = subprocess.run(
            # --env-file: no .env file of the checkout's own can fill the gap.
            [*command, "--env-file", str(no_env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        assert checked.returncode != 0, f"{' '.join(command)} ran without {missing}"
        assert missing in checked.stderr, checked.stderr


def test_every_published_port_is_on_loopback_only() -> None:
    for file in (COMPOSE_FILE, POSTGRES_OVERRIDE):
        text = file.read_text()
        published = re.findall(r"^\s+ports:\n((?:\s+- .*\n)+)", text, flags=re.MULTILINE)
        mappings = [
            line.strip()[2:].strip('"') for block in published for line in block.splitlines()
        ]
        assert all(m.startswith("127.0.0.1:") for m in mappings), (file.name, mappings)
    assert "ports:" in COMPOSE_FILE.read_text(), "compose.yaml publishes no ports"


class ComposeProject:
    """One `compose up` of compose.yaml under a unique project name and free host ports.

    ``certs``: compose.tls.yaml on top, with the certificates in that directory.
    """

    def __init__(self, certs: Path | None = None, *, observed: bool = False) -> None:
        self.command = compose_or_skip()
        self.files = [COMPOSE_FILE] + ([TLS_OVERRIDE] if certs is not None else [])
        self.files += [OBSERVE_OVERRIDE] if observed else []
        self.name = f"crossbank-test-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.name,
            "SOURCE_BANK_PORT": str(free_port()),
            "TARGET_BANK_PORT": str(free_port()),
            "PROMISE_STORE_PORT": str(free_port()),
            "CONSOLE_PORT": str(free_port()),
            "PROMETHEUS_PORT": str(free_port()),
            "SCRAPE_INTERVAL": "1s",
            **TOKENS,
            "LEASE_TTL": "2",
            **({"CROSSBANK_CERTS": str(certs)} if certs is not None else {}),
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.command, *(arg for file in self.files for arg in ("-f", str(file))), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=ROOT,
            check=False,
            timeout=300,
        )
        if check:
            assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def up_and_transfer(self, transfer_id: str, amount: str) -> float:
        """``up -d``, every service healthy, the demo accounts, one committed transfer;
        the seconds until healthy."""
        started = time.monotonic()
        self.run("up", "-d")
        healthy_after = time.monotonic() - started + self.wait_healthy()
        self.cli("accounts", "seed")
        argv = ("--from", "alice", "--to", "carol", "--amount", amount, "--id", transfer_id)
        result = self.cli("transfer", *argv)
        assert result["status"] == "committed", result
        return healthy_after

    def cli(self, *args: str) -> dict[str, Any]:
        done = self.run("run", "--rm", "orchestrator", *args, "--json")
        document: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{") :])
        return document

    def wait_healthy(self, timeout: float = 180.0) -> float:
        """Seconds until every service's container reports healthy."""
        client = from_env()
        started = time.monotonic()
        try:
            while True:
                health = {}
                for container in client.containers.list(
                    filters={"label": f"com.docker.compose.project={self.name}"}
                ):
                    service = container.labels["com.docker.compose.service"]
                    health[service] = container.attrs["State"].get("Health", {}).get("Status")
                if all(health.get(service) == "healthy" for service in SERVICES_UP):
                    return time.monotonic() - started
                assert time.monotonic() - started < timeout, (
                    f"not healthy after {timeout}s: {health}"
                )
                time.sleep(0.2)
        finally:
            client.close()


@contextlib.contextmanager
def brought_down(compose: ComposeProject) -> Iterator[ComposeProject]:
    """``compose``, then ``down -v`` however the test ends."""
    try:
        yield compose
    finally:
        compose.run("down", "-v", "--remove-orphans", check=False)


@pytest.fixture
def project(crossbank_images: None) -> Iterator[ComposeProject]:
    with brought_down(ComposeProject()) as compose:
        yield compose


@pytest.mark.containers
@pytest.mark.slow
def test_compose_up_serves_transfers_and_keeps_data_across_down_and_up(
    project: ComposeProject,
) -> None:
    healthy_after = project.up_and_transfer("compose-1", "12.50")
    print(f"\ncompose up -> all {len(SERVICES_UP)} services healthy: {healthy_after:.1f}s")
    before = project.cli("balances")

    project.run("down")  # keeps the named volumes
    project.run("up", "-d")
    project.wait_healthy()
    assert project.cli("balances") == before
    status = project.cli("status", "compose-1")
    assert status["result"]["status"] == "committed", status
    audit = project.cli("audit")
    assert audit["clean"] is True, audit


@pytest.fixture
def tls_project(crossbank_images: None, tmp_path: Path) -> Iterator[ComposeProject]:
    certs = tmp_path / "certs"
    make_set(certs, for_containers=True)
    with brought_down(ComposeProject(certs)) as compose:
        yield compose


@pytest.mark.containers
@pytest.mark.slow
def test_compose_on_tls_runs_every_link_on_https(tls_project: ComposeProject) -> None:
    """compose.tls.yaml: the CLI, the worker and the console reach the store and the banks
    over verified https; plain HTTP gets no answer from any published port."""
    tls_project.up_and_transfer("tls-1", "4.00")
    assert tls_project.cli("audit")["clean"] is True
    certs = Path(tls_project.env["CROSSBANK_CERTS"])
    trusted = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    for variable in ("SOURCE_BANK_PORT", "PROMISE_STORE_PORT", "CONSOLE_PORT"):
        port = tls_project.env[variable]
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/health", timeout=10, context=trusted
        ) as answer:
            assert answer.status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10)


@pytest.fixture
def observed_project(crossbank_images: None) -> Iterator[ComposeProject]:
    with brought_down(ComposeProject(observed=True)) as compose:
        yield compose


def prometheus_value(project: ComposeProject, query: str) -> float | None:
    """The one number Prometheus's query API gives for ``query`` (None when none yet)."""
    url = f"http://127.0.0.1:{project.env['PROMETHEUS_PORT']}/api/v1/query?" + (
        urllib.parse.urlencode({"query": query})
    )
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            result = json.load(answer)["data"]["result"]
    except (urllib.error.URLError, ConnectionError):
        return None
    return float(result[0]["value"][1]) if len(result) == 1 else None


@pytest.mark.containers
@pytest.mark.slow
def test_compose_observe_scrapes_every_part(observed_project: ComposeProject) -> None:
    """compose.observe.yaml: its Prometheus scrapes both banks and the store with their
    tokens and the worker on its metrics port, and counts the transfer that ran."""
    observed_project.up_and_transfer("observe-1", "2.00")
    wanted = {
        'sum(up{job="banks"})': 2,
        'sum(up{job="store"})': 1,
        'sum(up{job="workers"})': 1,
        'crossbank_bank_ledger_entries{bank="target",kind="credit"}': 1,
        'sum(crossbank_worker_transfers_finished_total{status="committed"})': 1,
        'sum(crossbank_store_requests_total{kind="task.fulfill"})': 1,
        "crossbank:money_in_flight_cents": 0,
    }
    deadline = time.monotonic() + 90
    while (seen := {q: prometheus_value(observed_project, q) for q in wanted}) != wanted:
        assert time.monotonic() < deadline, seen
        time.sleep(1)


def console_call(project: ComposeProject, path: str, token: str | None) -> tuple[int, Any]:
    """One GET to the console service on its published port; the status and the JSON answer."""
    request = urllib.request.Request(f"http://127.0.0.1:{project.env['CONSOLE_PORT']}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.mark.containers
@pytest.mark.slow
def test_the_console_service_answers_with_the_bank_token_only(project: ComposeProject) -> None:
    project.up_and_transfer("console-1", "3.00")

    assert console_call(project, "/health", None)[0] == 200
    assert console_call(project, "/api/state", None)[0] == 401
    token = TOKENS["BANK_TOKEN"]  # no CONSOLE_TOKEN set: the bank's token stands in
    deadline = time.monotonic() + 30
    while True:
        status, body = console_call(project, "/api/state", token)
        sections = body.get("sections") if status == 200 else None
        rows = {row["transfer_id"]: row for row in (sections or {}).get("transfers", [])}
        if "console-1" in rows and rows["console-1"]["status"] == "committed":
            break
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.5)
    assert sections is not None
    assert sections["banks"]["source"]["up"] is True
    assert sections["totals"]["equal"] is True
    # The worker's status file reaches the console through their shared volume.
    workers = sections["workers"]["workers"]
    assert [w["alive"] for w in workers] == [True], workers
    assert sections["system"]["local"] is False, "only the local demo's console acts on processes"
