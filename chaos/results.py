"""A campaign's outcome: the human summary and the replayable results file."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.injector import FaultRecord
from chaos.lifetimes import Lifetimes
from chaos.schedule import POWER_CUT, Campaign, CampaignParams, campaign_to_dict
from chaos.workload import TransferRun
from orchestrator.audit import Violation


@dataclass
class Outcome:
    campaign: Campaign
    fault_records: list[FaultRecord]
    runs: dict[str, TransferRun]
    violations: list[Violation]
    workload_seconds: float | None
    quiesce_seconds: float | None
    total_seconds: float
    ledger_rounds: int = 0
    entries_seen: int = 0
    notes: list[str] = field(default_factory=list)
    lifetimes: Lifetimes | None = None
    #: Writes refused by a full disk, by part (from the parts' logs).
    disk_refusals: dict[str, int] = field(default_factory=dict)

    def by_outcome(self) -> dict[str, int]:
        return dict(sorted(Counter(run.status for run in self.runs.values()).items()))

    def injected_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(r.fault.kind for r in self.fault_records if r.injected).items()))

    def skipped_by_kind(self) -> dict[str, int]:
        return dict(
            sorted(Counter(r.fault.kind for r in self.fault_records if not r.injected).items())
        )

    def restarted_after_disk_full(self) -> dict[str, int]:
        """Parts that did not recover by themselves from a full disk and were restarted."""
        return dict(
            sorted(Counter(r.fault.target for r in self.fault_records if r.restarted).items())
        )

    def acknowledged_before_cuts(self) -> list[int]:
        """For each power cut, in order: the ledger entries acknowledged before it."""
        return [
            r.acknowledged
            for r in self.fault_records
            if r.fault.kind == POWER_CUT and r.injected and r.acknowledged is not None
        ]

    def operator_actions(self) -> dict[str, dict[str, int]]:
        """For each operator kind carried out, how many answered each outcome
        (``no_answer``: every attempt's answer was lost)."""
        counts: dict[str, Counter[str]] = {}
        for record in self.fault_records:
            if record.act is not None:
                outcome = record.act.outcome or "no_answer"
                counts.setdefault(record.act.kind, Counter())[outcome] += 1
        return {kind: dict(sorted(counts[kind].items())) for kind in sorted(counts)}

    def operator_took_effect(self) -> dict[str, int]:
        """For each operator kind, how many actions said they took effect."""
        return dict(
            sorted(
                Counter(
                    r.act.kind
                    for r in self.fault_records
                    if r.act is not None and r.act.took_effect
                ).items()
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.campaign.params.seed,
            "backend": self.campaign.params.backend,
            "params": self.campaign.params.to_dict(),
            "plan": campaign_to_dict(self.campaign),
            "schedule": [record.to_dict() for record in self.fault_records],
            "outcome": {
                "transfers_by_outcome": self.by_outcome(),
                "faults_injected_by_kind": self.injected_by_kind(),
                "faults_skipped_by_kind": self.skipped_by_kind(),
                "restarted_after_disk_full": self.restarted_after_disk_full(),
                "entries_acknowledged_before_each_power_cut": self.acknowledged_before_cuts(),
                "operator_actions": self.operator_actions(),
                "operator_actions_took_effect": self.operator_took_effect(),
                "workload_seconds": self.workload_seconds,
                "quiesce_seconds": self.quiesce_seconds,
                "total_seconds": self.total_seconds,
                "ledger_rounds": self.ledger_rounds,
                "entries_seen_during_run": self.entries_seen,
                "notes": self.notes,
                "lifetimes": self.lifetimes.to_dict() if self.lifetimes else None,
                "writes_refused_by_full_disks": self.disk_refusals,
            },
            "violations": [v.to_json() for v in self.violations],
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    def summary(self) -> str:
        params = self.campaign.params
        lines = [
            f"chaos campaign seed={params.seed} transfers={params.transfers} "
            f"concurrency={params.concurrency} faults={params.faults} workers={params.workers} "
            f"duration={params.duration:g}s backend={params.backend}",
            "transfers by outcome: " + _counts(self.by_outcome()),
            f"faults injected ({sum(self.injected_by_kind().values())}): "
            + _counts(self.injected_by_kind()),
        ]
        if self.skipped_by_kind():
            lines.append("faults skipped (target unavailable): " + _counts(self.skipped_by_kind()))
        if self.restarted_after_disk_full():
            lines.append(
                "restarted after a full disk (did not serve again by itself): "
                + _counts(self.restarted_after_disk_full())
            )
        if self.acknowledged_before_cuts():
            lines.append(
                "ledger entries acknowledged before each power cut (each must survive): "
                + ", ".join(str(n) for n in self.acknowledged_before_cuts())
            )
        for kind, outcomes in self.operator_actions().items():
            took = self.operator_took_effect().get(kind, 0)
            lines.append(
                f"operator {kind} answers ({sum(outcomes.values())}, {took} took effect): "
                + _counts(outcomes)
            )
        if params.unsynced_bank:
            lines.append(
                "control run: the source bank never syncs its ledger, so a power cut must "
                "lose entries it acknowledged and they must show as violations"
            )
        lines.append(
            f"workload {_seconds(self.workload_seconds)}, time to quiesce after the faults "
            f"{_seconds(self.quiesce_seconds)}, total {self.total_seconds:.1f}s"
        )
        lines.append(
            f"ledger entries seen during the run: {self.entries_seen} "
            f"({self.ledger_rounds} listing rounds)"
        )
        if self.disk_refusals:
            lines.append("writes refused by full disks: " + _counts(self.disk_refusals))
        if self.lifetimes is not None:
            lines.append(self.lifetimes.describe())
        lines += [f"note: {note}" for note in self.notes]
        if not self.violations:
            lines.append("violations: none")
        else:
            lines.append(f"violations: {len(self.violations)}")
            for violation in self.violations:
                lines.append(
                    f"  [{violation.invariant}] transfer {violation.transfer_id}: {violation.detail}"
                )
                lines += [
                    f"      {json.dumps(entry, sort_keys=True)}" for entry in violation.entries
                ]
        return "\n".join(lines)


def load_params(path: Path) -> CampaignParams:
    """The parameters (seed included) a results file was produced with, for ``--replay``."""
    try:
        data = json.loads(path.read_text())
        return CampaignParams.from_dict(data["params"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a chaos results file: {exc}") from exc


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key}={value}" for key, value in counts.items()) or "none"


def _seconds(value: float | None) -> str:
    return "did not finish" if value is None else f"{value:.1f}s"
