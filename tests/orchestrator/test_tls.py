"""Every link on https: the saga, the CLI and the refusals a user meets when TLS is set up wrong.

The banks and the promise store serve TLS with a certificate made for this
run by a CA made for this run (``tls_files``); the workers and the CLI trust
that CA through ``TLS_CA_FILE``, as a deployment with a private CA would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from envsettings.tls import ClientTls
from orchestrator.bank_client import BankUnavailable, bank_client
from orchestrator.local.postgres import PrivatePostgres
from orchestrator.local.supervisor import (
    LocalTls,
    ManagedProcess,
    ServiceError,
    bank_process,
    free_port,
    local_url,
)
from orchestrator.settings import Settings
from tests.conftest import TlsFiles
from tests.orchestrator.cluster import Cluster, running_cluster
from tests.orchestrator.test_cli_input import run_cli
from tests.postgres_available import require_postgres


@pytest.fixture(scope="module")
def local_tls(tls_files: TlsFiles) -> LocalTls:
    return LocalTls(ca=tls_files.ca.cert, cert=tls_files.server.cert, key=tls_files.server.key)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, local_tls: LocalTls) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("tls-cluster"), tls=local_tls) as cluster:
        yield cluster


def cli_json(cluster: Cluster, *args: str, expect: int) -> dict[str, object]:
    result = run_cli(cluster, *args, "--json")
    assert result.returncode == expect, (result.returncode, result.stdout, result.stderr)
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_every_link_is_https(tls_cluster: Cluster) -> None:
    settings = tls_cluster.settings
    urls = (settings.source_bank_url, settings.target_bank_url, settings.resonate_url)
    assert all(url is not None and url.startswith("https://127.0.0.1:") for url in urls)


def test_committed_compensated_and_failed_over_tls(tls_cluster: Cluster) -> None:
    asyncio.run(
        tls_cluster.seed(
            {"tls-alice": 10_000, "tls-bob": 100},
            {"tls-carol": 0, "tls-shut": 0},
            closed=("tls-shut",),
        )
    )
    committed = cli_json(
        tls_cluster,
        "transfer",
        "--from",
        "tls-alice",
        "--to",
        "tls-carol",
        "--amount",
        "12.50",
        expect=0,
    )
    # The CLI would refuse a closed target up front; a transfer started anyway is compensated.
    result = asyncio.run(tls_cluster.transfer("tls-comp", "tls-alice", "tls-shut", 100))
    failed = asyncio.run(tls_cluster.transfer("tls-fail", "tls-bob", "tls-carol", 5_000))

    assert committed["status"] == "committed"
    assert (result["status"], result["reason"]) == ("compensated", "account_closed")
    assert (failed["status"], failed["reason"]) == ("failed", "insufficient_funds")
    balances = asyncio.run(tls_cluster.balances())
    assert balances["source:tls-alice"] == 10_000 - 1250
    assert balances["target:tls-carol"] == 1250
    assert balances["source:tls-bob"] == 100
    audit = cli_json(tls_cluster, "audit", expect=0)
    assert audit["violations"] == []


def test_plain_http_to_a_tls_port_is_refused_naming_the_setting(tls_cluster: Cluster) -> None:
    plain = local_url(tls_cluster.ports["source"])
    result = run_cli(tls_cluster, "balances", env={"SOURCE_BANK_URL": plain})
    assert_refused_in_one_line(result, "speaks TLS", "use https://127.0.0.1:", "SOURCE_BANK_URL")


def test_tls_to_a_plain_port_is_refused_naming_the_setting(
    tmp_path: Path, tls_cluster: Cluster
) -> None:
    plain, port = serving(tmp_path, "target", None)
    with plain:
        result = run_cli(
            tls_cluster, "balances", env={"TARGET_BANK_URL": f"https://127.0.0.1:{port}"}
        )
    assert_refused_in_one_line(
        result, "does not speak TLS", f"use http://127.0.0.1:{port}", "TARGET_BANK_URL"
    )


@pytest.mark.parametrize(
    ("problem", "words"),
    [
        ("unknown_ca", ("does not trust", "TLS_CA_FILE", "SOURCE_BANK_URL")),
        ("other_host", ("is not for 127.0.0.1", "SOURCE_BANK_URL")),
        ("expired", ("has expired", "SOURCE_BANK_URL")),
    ],
)
def test_a_certificate_the_client_cannot_trust_is_refused(
    tmp_path: Path, tls_cluster: Cluster, tls_files: TlsFiles, problem: str, words: tuple[str, ...]
) -> None:
    """A bank serving a certificate the client must not trust: one line, exit 2, what to fix."""
    served = {
        "unknown_ca": tls_files.unknown_server,
        "other_host": tls_files.other_host,
        "expired": tls_files.expired,
    }[problem]
    bank, port = serving(tmp_path, "source", LocalTls(tls_files.ca.cert, served.cert, served.key))
    with bank:
        result = run_cli(
            tls_cluster, "balances", env={"SOURCE_BANK_URL": f"https://127.0.0.1:{port}"}
        )
    assert_refused_in_one_line(result, *words)


def serving(path: Path, role: str, tls: LocalTls | None) -> tuple[ManagedProcess, int]:
    """A bank of its own (not started), serving ``tls``'s certificate however wrong it is."""
    port = free_port()
    bank = bank_process(
        role, port=port, ledger=path / f"{role}.db", log_path=path / f"{role}.log", tls=tls
    )
    if tls is not None:
        bank.health_tls = _unverified()  # the bank is up; it is its certificate that is wrong
    return bank, port


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, line
    for word in words:
        assert word in line, line


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_a_missing_ca_file_is_refused_naming_the_setting(tls_cluster: Cluster) -> None:
    result = run_cli(tls_cluster, "balances", env={"TLS_CA_FILE": "/nonexistent/ca.pem"})
    assert result.returncode == 2
    assert "TLS_CA_FILE names a file that does not exist: /nonexistent/ca.pem" in result.stderr


def test_a_bank_with_a_missing_certificate_will_not_start(tmp_path: Path) -> None:
    bank = ManagedProcess(
        "source_bank",
        env={
            "PORT": "0",
            "LEDGER_PATH": str(tmp_path / "l.db"),
            "TLS_CERT_FILE": str(tmp_path / "none.pem"),
            "TLS_KEY_FILE": str(tmp_path / "none-key.pem"),
        },
        health_url="https://127.0.0.1:1/health",
        log_path=tmp_path / "bank.log",
    )
    with pytest.raises(ServiceError, match="exited with code 2"):
        bank.start(timeout=20)
    assert "TLS_CERT_FILE names a file that does not exist" in (tmp_path / "bank.log").read_text()


def test_mutual_tls_refuses_a_client_without_a_certificate(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    """A bank that requires client certificates: without one no request gets through."""
    tls = LocalTls(ca=tls_files.ca.cert, cert=tls_files.server.cert, key=tls_files.server.key)
    port = free_port()
    bank = bank_process(
        "source",
        port=port,
        ledger=tmp_path / "source.db",
        log_path=tmp_path / "source.log",
        tls=tls,
        env={"TLS_CLIENT_CA_FILE": str(tls_files.ca.cert)},
    )
    with_certificate = ssl.create_default_context(cafile=str(tls_files.ca.cert))
    with_certificate.load_cert_chain(str(tls_files.client.cert), str(tls_files.client.key))
    bank.health_tls = with_certificate
    with bank:
        context = ssl.create_default_context(cafile=str(tls_files.ca.cert))
        with pytest.raises(OSError, match=r"CERTIFICATE_REQUIRED|closed without an answer|reset"):
            _get_accounts(port, context)
        context.load_cert_chain(str(tls_files.client.cert), str(tls_files.client.key))
        assert _get_accounts(port, context).startswith(b"HTTP/1.1 200 ")


def _get_accounts(port: int, context: ssl.SSLContext) -> bytes:
    """``GET /accounts`` over TLS with ``context``; the start of the answer (b"" if none)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"GET /accounts HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = sock.recv(100)
        if not answer:
            raise ConnectionResetError("closed without an answer")
        return answer


def test_a_tls_failure_is_an_unknown_outcome_logged_once(
    tmp_path: Path, tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """What a worker's bank client does with an expired certificate: retryable, one log line."""
    bank, port = serving(
        tmp_path,
        "target",
        LocalTls(tls_files.ca.cert, tls_files.expired.cert, tls_files.expired.key),
    )

    async def attempts() -> list[BaseException]:
        settings = Settings(
            target_bank_url=f"https://127.0.0.1:{port}", tls=ClientTls(tls_files.ca.cert)
        )
        failures: list[BaseException] = []
        async with bank_client(settings, "target", log_tls_failures=True) as client:
            for _ in range(5):
                try:
                    await client.post_entry("tls-op", "carol", 1, "credit")
                except BankUnavailable as exc:
                    failures.append(exc)
        return failures

    with bank, caplog.at_level(logging.INFO, logger="orchestrator.bank_client"):
        failures = asyncio.run(attempts())
    assert len(failures) == 5  # each one retryable, as any connection failure is
    logged = [r.getMessage() for r in caplog.records if r.name == "orchestrator.bank_client"]
    assert len(logged) == 1, logged
    assert "target bank: the certificate of" in logged[0]
    assert "has expired" in logged[0]


def test_resonate_on_postgres_over_tls_with_verify_full(
    tmp_path: Path, local_tls: LocalTls, tls_files: TlsFiles
) -> None:
    """The DSN's own sslmode=verify-full and sslrootcert: transfers run, and a CA the client
    does not trust is refused in one line."""
    require_postgres()
    postgres = PrivatePostgres(free_port(), log_path=tmp_path / "postgres.log", tls=local_tls)
    with postgres:
        dsn = postgres.create_database("crossbank")
        assert "sslmode=verify-full" in dsn
        with psycopg.connect(dsn) as connection:
            row = connection.execute(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
        assert row == (True,)
        with running_cluster(tmp_path / "system", backend="postgres", postgres_dsn=dsn) as cluster:
            asyncio.run(cluster.seed({"pg-alice": 1_000}, {"pg-carol": 0}))
            result = asyncio.run(cluster.transfer("pg-tls-1", "pg-alice", "pg-carol", 250))
            assert result["status"] == "committed"
            wrong = dsn.replace(str(local_tls.ca), str(tls_files.unknown_ca.cert))
            refused = run_cli(cluster, "transfer", "--from", "pg-alice", "--to", "pg-carol",
                              "--amount", "1", env={"RESONATE_PG_DSN": wrong})  # fmt: skip
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "certificate verify failed" in refused.stderr
