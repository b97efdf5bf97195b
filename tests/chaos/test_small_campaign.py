"""A small chaos campaign on real processes: every fault kind strikes, no invariant breaks."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from chaos.results import load_params
from chaos.runner import run_campaign
from chaos.schedule import FAULT_KINDS, CampaignParams

SEED = 20261125


@pytest.fixture(autouse=True)
def _quiet_sdk_retries():
    # The client retries a store that is down on purpose; those warnings are expected.
    logger = logging.getLogger("resonate")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.mark.timeout(400)
def test_small_campaign_keeps_every_invariant(tmp_path: Path) -> None:
    params = CampaignParams(
        seed=SEED,
        transfers=200,
        concurrency=8,
        faults=25,
        workers=2,
        duration=60.0,
        quiesce_timeout=150.0,
    )
    lines: list[str] = []
    outcome = asyncio.run(run_campaign(params, workdir=tmp_path / "run", log=lines.append))
    summary = outcome.summary()
    print(summary)

    assert outcome.violations == [], summary
    assert sorted(outcome.injected_by_kind()) == sorted(FAULT_KINDS), summary
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
    assert len(data["schedule"]) == params.faults
    assert data["violations"] == []
    assert load_params(results) == params
