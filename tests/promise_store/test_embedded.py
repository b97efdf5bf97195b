"""The embedded store: one process runs durable workflows with no server, and survives kill -9."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promise_store import StoreLocked
from promise_store.embedded import EmbeddedStore
from tests.promise_store.conftest import App, Steps


@pytest.fixture
def env(tmp_path: Path, steps: Steps) -> dict[str, str]:
    # A 2 s lease: a killed process's task comes back 2 s after its last heartbeat.
    return {**steps.env(ttl_s=2), "STORE_PATH": str(tmp_path / "embedded.db")}


def test_result_survives_sigkill_and_a_second_start_runs_nothing_again(
    launch: Callable[..., App], steps: Steps, env: dict[str, str]
) -> None:
    first = launch("run", "wf-1", "3", "0", "--here", "--linger", env=env)
    assert first.result() == {"id": "wf-1", "total": 60}
    first.kill()

    again = launch("run", "wf-1", "3", "0", "--here", env=env)
    assert again.result() == {"id": "wf-1", "total": 60}
    for i in (1, 2, 3):
        assert steps.count(f"start wf-1 {i}") == 1
        assert steps.count(f"done wf-1 {i}") == 1


def test_process_killed_mid_step_resumes_after_its_lease_expires(
    launch: Callable[..., App], steps: Steps, env: dict[str, str]
) -> None:
    steps.hold(2)
    first = launch("run", "wf-2", "3", "0", "--here", env=env)
    steps.wait_for("start wf-2 2")
    first.kill()
    steps.release(2)

    second = launch("run", "wf-2", "3", "0", "--here", env=env)
    assert second.result() == {"id": "wf-2", "total": 60}
    assert steps.count("start wf-2 1") == 1, "a completed step ran again"
    assert steps.count("start wf-2 2") == 2, "the killed step is retried"
    assert steps.count("done wf-2 2") == 1
    assert steps.count("done wf-2 3") == 1


def test_durable_sleep_survives_a_kill(
    launch: Callable[..., App], steps: Steps, env: dict[str, str]
) -> None:
    first = launch("run", "wf-3", "1", "2", "--here", env=env)
    steps.wait_for("done wf-3 0")
    first.kill()
    assert steps.count("woke wf-3") == 0

    second = launch("run", "wf-3", "1", "2", "--here", env=env)
    assert second.result() == {"id": "wf-3", "total": 10}
    assert steps.count("woke wf-3") == 1
    assert steps.count("start wf-3 1") == 1


def test_a_second_opener_is_refused_while_a_process_holds_the_file(
    launch: Callable[..., App], steps: Steps, env: dict[str, str]
) -> None:
    holder = launch("run", "wf-4", "1", "0", "--here", "--linger", env=env)
    holder.result()
    with pytest.raises(StoreLocked) as refused:
        EmbeddedStore(env["STORE_PATH"])
    assert env["STORE_PATH"] in str(refused.value)
    assert "RESONATE_URL" in str(refused.value)
    holder.kill()
    EmbeddedStore(env["STORE_PATH"]).store.close_sync()  # the kernel dropped the lock
