"""A small chaos campaign on real processes: every fault kind strikes, no invariant breaks.

Every kind includes the partitions of each link, the full disks and the
clock steps: the disks are skipped (and reported so) without root, the clock
steps without libfaketime. It runs on both backends. On Resonate on Postgres the campaign is shorter
(the store's is the long one; this one adds kill_postgres and the other
backend's paths), and it skips, saying what is missing, only without
PostgreSQL binaries or resonate.sql.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from chaos.clock import libfaketime
from chaos.disks import why_no_disks
from chaos.results import load_params
from chaos.runner import run_campaign
from chaos.schedule import CLOCK_KINDS, DISK_KINDS, CampaignParams
from orchestrator.local.system import POSTGRES_BACKEND, STORE_BACKEND
from tests.postgres_available import require_postgres

# The client retries a store that is down on purpose; those warnings are expected.
pytestmark = pytest.mark.usefixtures("quiet_sdk_retries")

SEED = 20261125
#: Per backend: transfers, faults, seconds of faults, and the stall limit after them.
SIZES = {
    STORE_BACKEND: CampaignParams(
        seed=SEED,
        transfers=200,
        faults=40,
        duration=60.0,
        quiesce_timeout=150.0,
        rate=3.5,  # the transfers span the faults instead of finishing in the first 20 s
    ),
    POSTGRES_BACKEND: CampaignParams(
        seed=SEED,
        transfers=600,
        faults=30,
        duration=20.0,
        quiesce_timeout=60.0,
        backend=POSTGRES_BACKEND,
    ),
}


def _can_inject(kinds: tuple[str, ...]) -> list[str]:
    """The kinds this machine can carry out: disks need root, clock steps need libfaketime."""
    return [
        kind
        for kind in kinds
        if not (kind in DISK_KINDS and why_no_disks())
        and not (kind in CLOCK_KINDS and libfaketime() is None)
    ]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", SIZES)
def test_small_campaign_keeps_every_invariant(tmp_path: Path, backend: str) -> None:
    if backend == POSTGRES_BACKEND:
        require_postgres()
    params = SIZES[backend]
    lines: list[str] = []
    outcome = asyncio.run(run_campaign(params, workdir=tmp_path / "run", log=lines.append))
    summary = outcome.summary()
    print(summary)

    assert outcome.violations == [], summary
    assert sorted(outcome.injected_by_kind()) == sorted(_can_inject(params.fault_kinds)), summary
    by_outcome = outcome.by_outcome()
    assert sum(by_outcome.values()) == params.transfers
    assert set(by_outcome) <= {"committed", "compensated", "failed"}, summary
    assert by_outcome.get("committed", 0) > 0, summary
    assert by_outcome.get("failed", 0) > 0, summary  # oversized transfers always fail
    assert outcome.entries_seen > 0

    results = tmp_path / "results.json"
    outcome.write(results)
    data = json.loads(results.read_text())
    assert data["seed"] == SEED
    assert data["backend"] == backend
    assert len(data["schedule"]) == params.faults
    assert data["violations"] == []
    assert load_params(results) == params
