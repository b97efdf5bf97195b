"""One builder runs a local crossbank for everyone; settings go to children and come back the same.

The demos, chaos, the test clusters, the bank fixtures and the benchmarks all
start their parts through :class:`orchestrator.local.system.LocalSystem`, so
what they rely on is checked here once, on real processes: each part is
started with the system's tokens (and only those: none leaks in from the
caller's environment), a killed part is really gone and comes back on its
port with its data, and stopping leaves nothing running.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import fields, replace
from pathlib import Path

import pytest
import requests

from envsettings.tls import ClientTls
from orchestrator.local import supervisor
from orchestrator.local.supervisor import is_healthy, local_url
from orchestrator.local.system import (
    BANKS,
    IMPATIENT,
    SOURCE,
    STORE,
    TARGET,
    LocalSystem,
    with_fresh_tokens,
)
from orchestrator.settings import Settings
from orchestrator.transfers import TransferRequest, start_transfer
from tests.conftest import TlsFiles


def every_field_changed(tls: TlsFiles) -> Settings:
    """Settings with no field at its default (TLS files must exist to be read back)."""
    return replace(
        EVERY_FIELD_BUT_TLS_CHANGED,
        tls=ClientTls(tls.ca.cert, tls.client.cert, tls.client.key),
    )


EVERY_FIELD_BUT_TLS_CHANGED = Settings(
    resonate_url="http://127.0.0.1:1",
    resonate_token="store-secret",
    store_path=Path("/somewhere/promises.db"),
    source_bank_url="http://127.0.0.1:2",
    target_bank_url="https://bank.example:3",
    bank_token="bank-secret",
    group="elsewhere",
    lease_ttl=2.5,
    step_attempts=7,
    step_backoff=3,
    step_backoff_max=9,
    bank_timeout=0.25,
    attention_after=12.0,
    push_idle_timeout=4.0,
    push_max_lifetime=99.5,
    worker_health_file=Path("/somewhere/worker.health"),
    pg_warn_every=2.5,
    store_request_timeout=7.5,
    saga_versions=(1, 2),
    saga_version=1,
    operator="someone@somewhere",
)


def test_settings_come_back_from_the_environment_they_write(tls_files: TlsFiles) -> None:
    every_field = every_field_changed(tls_files)
    # The other backend: RESONATE_PG_DSN instead of RESONATE_URL (never both).
    on_postgres = replace(
        every_field, resonate_url=None, resonate_pg_dsn="postgresql://crossbank@db:5/resonate"
    )
    defaults = Settings()
    left_at_default = [
        f.name
        for f in fields(Settings)
        if f.name != "resonate_pg_dsn" and getattr(every_field, f.name) == getattr(defaults, f.name)
    ]
    assert left_at_default == [], "a new setting: change it in every_field_changed too"
    assert on_postgres.resonate_pg_dsn != defaults.resonate_pg_dsn
    assert Settings.from_env(every_field.to_env()) == every_field
    assert Settings.from_env(on_postgres.to_env()) == on_postgres
    assert Settings.from_env(defaults.to_env()) == defaults


def test_a_child_sees_the_settings_it_is_given_not_its_parents(tls_files: TlsFiles) -> None:
    parent = every_field_changed(tls_files).to_env()
    assert Settings.from_env({**parent, **Settings().to_env()}) == Settings()


def test_a_system_refuses_a_part_it_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'bank'"):
        LocalSystem(tmp_path, run=("bank",))
    with pytest.raises(ValueError, match="'worker'"):
        LocalSystem(tmp_path, env={"worker": {"LOG_LEVEL": "INFO"}})


def test_parts_run_elsewhere_keep_the_address_the_settings_give() -> None:
    elsewhere = Settings(source_bank_url="http://127.0.0.1:7001", target_bank_url="http://b:7002")
    system = LocalSystem(Path("unused"), elsewhere, run=(STORE,))
    assert system.settings.source_bank_url == "http://127.0.0.1:7001"
    assert system.settings.target_bank_url == "http://b:7002"
    assert system.settings.resonate_url == local_url(system.ports[STORE])
    assert set(system.services) == {STORE}


def test_banks_without_a_token_ignore_the_callers_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``BANK_TOKEN`` exported in the shell once made the demo's banks refuse the demo."""
    monkeypatch.setenv("BANK_TOKEN", "from-the-shell")
    with LocalSystem(tmp_path, run=BANKS, workers=0) as system:
        for part in BANKS:
            answer = requests.get(f"{local_url(system.ports[part])}/accounts", timeout=10)
            assert answer.status_code == 200, answer.text


def test_a_local_system_with_tokens_runs_kills_restarts_and_stops_for_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANK_TOKEN", "from-the-shell")
    monkeypatch.setenv("RESONATE_TOKEN", "from-the-shell")
    rule = {"action": "latency", "kind": "credit", "latency_ms": 1}
    system = LocalSystem(
        tmp_path / "data",
        with_fresh_tokens(IMPATIENT),
        faults=[rule],
        env={STORE: {"SNAPSHOT_EVERY": "5"}},
        log_dir=tmp_path / "logs",
    )
    with system:
        source_url = local_url(system.ports[SOURCE])
        assert requests.get(f"{source_url}/accounts", timeout=10).status_code == 401
        store_poll = f"{local_url(system.ports[STORE])}/poll/some-group/some-pid"
        assert requests.get(store_poll, timeout=10).status_code == 401
        bearer = {"Authorization": f"Bearer {system.settings.bank_token}"}
        rules = requests.get(f"{source_url}/admin/faults", headers=bearer, timeout=10).json()
        assert [{k: r[k] for k in rule} for r in rules["faults"]] == [rule]

        asyncio.run(system.seed({"ls-alice": 1_000}, {"ls-bob": 0}))
        assert _transfer(system, "ls-1", 300) == "committed"
        assert asyncio.run(system.balances())["target:ls-bob"] == 300

        port = system.ports[TARGET]
        system.kill(TARGET)
        assert not system.part(TARGET).running()
        assert not is_healthy(f"{local_url(port)}/health")
        system.restart(TARGET)
        assert system.ports[TARGET] == port
        assert asyncio.run(system.balances())["target:ls-bob"] == 300

        (worker,) = system.running_workers()
        system.kill(worker.name)
        standby = system.start_worker()
        assert _transfer(system, "ls-2", 200) == "committed"
        assert standby.running()
        assert not worker.running()
        assert asyncio.run(system.violations()) == []
    assert not any(process.running() for process in system.processes.values())
    assert not any(is_healthy(f"{local_url(port)}/health") for port in system.ports.values())
    data = {path.name for path in (tmp_path / "data").iterdir()}
    assert {"promises.db", "source.db", "target.db"} <= data
    assert not any(name.endswith(".log") for name in data)
    assert (tmp_path / "logs" / "worker-2.log").exists()


def _transfer(system: LocalSystem, transfer_id: str, amount: int) -> str:
    async def run() -> str:
        async with system.session() as resonate:
            request = TransferRequest(transfer_id, "ls-alice", "ls-bob", amount)
            handle = await start_transfer(resonate, system.settings, request)
            result = await asyncio.wait_for(handle.result(), 60)
            return str(result["status"])

    return asyncio.run(run())


def test_free_ports_come_from_the_range_set_and_skip_ports_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(supervisor.LOCAL_PORTS_VARIABLE, "29100-29104")
    monkeypatch.setattr(supervisor, "_next_port", {(29100, 29104): 29100})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 29101))
        taken.listen()
        ports = [supervisor.free_port() for _ in range(4)]
        assert ports == [29100, 29102, 29103, 29104]
        assert supervisor.free_port() == 29100  # round again, from the start
    monkeypatch.setenv(supervisor.LOCAL_PORTS_VARIABLE, "29100")
    with pytest.raises(ValueError, match="CROSSBANK_LOCAL_PORTS must be LOW-HIGH"):
        supervisor.free_port()
