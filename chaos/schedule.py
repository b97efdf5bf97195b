"""The campaign plan: which faults strike when, and which transfers are sent.

Everything here is a pure function of the seed and the parameters, so a
failing campaign can be rerun exactly: same seed, same accounts, same
transfers, same faults at the same offsets. The workload and the faults draw
from separate random streams, so asking for more faults does not change the
transfers (and vice versa).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.accounts import Account, opening_total
from orchestrator.local.system import BACKENDS, POSTGRES_BACKEND, STORE_BACKEND

#: Every kind of fault the runner knows how to inject.
KILL_WORKER = "kill_worker"
KILL_SOURCE_BANK = "kill_source_bank"
KILL_TARGET_BANK = "kill_target_bank"
KILL_STORE = "kill_store"
KILL_POSTGRES = "kill_postgres"
PAUSE = "pause"
LATENCY = "latency"
FAIL_BEFORE = "fail_before"
FAIL_AFTER = "fail_after"
DROP_AFTER = "drop_after"
CLOSE_ACCOUNT = "close_account"
DISK_FULL_SOURCE_BANK = "disk_full_source_bank"
DISK_FULL_TARGET_BANK = "disk_full_target_bank"
DISK_FULL_STORE = "disk_full_store"
CLOCK_STEP_STORE = "clock_step_store"
CLOCK_STEP_WORKER = "clock_step_worker"
POWER_CUT = "power_cut"
#: Operator actions (:mod:`orchestrator.operations`), carried out by :mod:`chaos.operator_actions`.
CANCEL = "cancel"
RETRY = "retry"

SOURCE_BANK = "source_bank"
TARGET_BANK = "target_bank"
STORE = "store"
POSTGRES = "postgres"
#: The campaign's own send-only client, as the end of a network link.
CLIENT = "client"
#: What a power cut strikes: every process and every unsynced byte of the banks and the store.
MACHINE = "machine"
#: The worker whose clock the clock steps move (it runs under libfaketime).
CLOCK_WORKER = "worker-0"

#: Which transfer an operator action picks, at the moment it strikes: one whose
#: start the client has sent and whose end it has not heard, one a few places ahead in the
#: queue that the client has not started yet (a cancel then leaves a tombstone),
#: or one whose saga sleeps between two attempts of its fence or its reversal.
IN_FLIGHT = "in_flight"
NEXT_TO_START = "next_to_start"
WAITING = "waiting"
#: The picks each operator kind draws from.
OPERATOR_PICKS: dict[str, tuple[str, ...]] = {
    CANCEL: (IN_FLIGHT, NEXT_TO_START),
    RETRY: (WAITING, IN_FLIGHT),
}

#: How a link fails (see :mod:`chaos.proxy`): cut both ways, answers lost, new
#: connections hang, every connection reset.
LINK_MODES: tuple[str, ...] = ("partition", "oneway", "blackhole", "reset")
#: Network links a fault can cut: (name in the kind, the near end, the far part).
#: Worker links are cut for one worker at a time; the far end is what it talks to.
LINKS: tuple[tuple[str, str, str], ...] = (
    ("worker_store", "worker", STORE),
    ("client_store", CLIENT, STORE),
    ("worker_postgres", "worker", POSTGRES),
    ("client_postgres", CLIENT, POSTGRES),
    ("worker_source_bank", "worker", SOURCE_BANK),
    ("worker_target_bank", "worker", TARGET_BANK),
)


@dataclass(frozen=True)
class LinkFault:
    """What a link kind does: ``mode`` on the link from ``near`` to ``far``."""

    mode: str
    near: str
    far: str


#: ``oneway_worker_target_bank`` -> LinkFault("oneway", "worker", "target_bank"), ...
LINK_KINDS: dict[str, LinkFault] = {
    f"{mode}_{name}": LinkFault(mode, near, far) for mode in LINK_MODES for name, near, far in LINKS
}
#: The part whose disk each disk kind fills.
DISK_KINDS: dict[str, str] = {
    DISK_FULL_SOURCE_BANK: SOURCE_BANK,
    DISK_FULL_TARGET_BANK: TARGET_BANK,
    DISK_FULL_STORE: STORE,
}
#: The process whose clock each clock kind steps.
CLOCK_KINDS: dict[str, str] = {CLOCK_STEP_STORE: STORE, CLOCK_STEP_WORKER: CLOCK_WORKER}

FAULT_KINDS: tuple[str, ...] = (
    KILL_WORKER,
    KILL_SOURCE_BANK,
    KILL_TARGET_BANK,
    KILL_STORE,
    KILL_POSTGRES,
    PAUSE,
    LATENCY,
    FAIL_BEFORE,
    FAIL_AFTER,
    DROP_AFTER,
    CLOSE_ACCOUNT,
    *LINK_KINDS,
    *DISK_KINDS,
    *CLOCK_KINDS,
    POWER_CUT,
    *OPERATOR_PICKS,
)

#: Kinds drawn only when a campaign names them (``--kinds``): a power cut needs FUSE
#: and restarts every process; operator actions are not faults of the system but
#: commands to it. Leaving them out of the default keeps the plans of earlier seeds
#: as they were.
DRAWN_WHEN_NAMED: frozenset[str] = frozenset({POWER_CUT, CANCEL, RETRY})

#: The kinds that need a part only one backend has: the promise store, or Postgres.
_ONLY_ON: dict[str, str] = {
    KILL_STORE: STORE_BACKEND,
    KILL_POSTGRES: POSTGRES_BACKEND,
    DISK_FULL_STORE: STORE_BACKEND,
    CLOCK_STEP_STORE: STORE_BACKEND,
    # The power-cut filesystem holds the banks' ledgers and the store's journal; Postgres
    # keeps its own files.
    POWER_CUT: STORE_BACKEND,
    **{
        kind: POSTGRES_BACKEND if link.far == POSTGRES else STORE_BACKEND
        for kind, link in LINK_KINDS.items()
        if link.far in (STORE, POSTGRES)
    },
}


def kinds_for(backend: str) -> tuple[str, ...]:
    """Every fault kind a campaign on ``backend`` can carry out, in plan order."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return tuple(kind for kind in FAULT_KINDS if _ONLY_ON.get(kind, backend) == backend)


def default_kinds(backend: str) -> tuple[str, ...]:
    """The kinds a campaign on ``backend`` draws when it names none (see DRAWN_WHEN_NAMED)."""
    return tuple(kind for kind in kinds_for(backend) if kind not in DRAWN_WHEN_NAMED)


#: How often each kind is drawn once every kind has appeared. A store kill
#: stalls every transfer (and the SDK's reconnect backoff grows with each
#: one), so it is drawn least: the workload must keep running between faults.
_KIND_WEIGHTS: dict[str, float] = {
    KILL_WORKER: 3,
    KILL_SOURCE_BANK: 1.5,
    KILL_TARGET_BANK: 1.5,
    KILL_STORE: 1,
    KILL_POSTGRES: 1,
    PAUSE: 2,
    LATENCY: 2,
    FAIL_BEFORE: 2,
    FAIL_AFTER: 2,
    DROP_AFTER: 2,
    CLOSE_ACCOUNT: 2,
    # Sixteen link kinds: each alone is drawn less, together they are a third of the faults.
    **dict.fromkeys(LINK_KINDS, 0.75),
    **dict.fromkeys(DISK_KINDS, 1),
    **dict.fromkeys(CLOCK_KINDS, 1),
    POWER_CUT: 1,
    CANCEL: 2,
    RETRY: 2,
}

#: Faults that become a fault-injection rule on a bank (its admin API).
BANK_RULE_KINDS: frozenset[str] = frozenset({LATENCY, FAIL_BEFORE, FAIL_AFTER, DROP_AFTER})

#: Which ledger operations each bank sees: the source is debited and
#: reversed, the target is credited.
_BANK_OP_KINDS: dict[str, tuple[str, ...]] = {
    SOURCE_BANK: ("debit", "reversal"),
    TARGET_BANK: ("credit",),
}

ACCOUNTS_PER_BANK = 4
#: Mean size of an ordinary transfer, in cents.
_MEAN_AMOUNT = 5_000
#: Share of transfers larger than any balance they could meet, so some
#: debits are always rejected.
_OVERSIZED_SHARE = 0.08


def worker_name(index: int) -> str:
    return f"worker-{index}"


@dataclass(frozen=True)
class CampaignParams:
    """What a user chooses for a campaign; together with the seed it fixes the plan."""

    seed: int
    transfers: int = 200
    concurrency: int = 8
    faults: int = 25
    workers: int = 2
    duration: float = 30.0
    quiesce_timeout: float = 120.0
    #: Which fault kinds to draw from (empty: every kind the backend has), to focus a campaign.
    kinds: tuple[str, ...] = ()
    #: Where transfers are kept: crossbank's promise store or Resonate on Postgres.
    backend: str = STORE_BACKEND
    #: Transfers started per second at most (0: as fast as concurrency allows), so a
    #: long campaign keeps traffic flowing for its whole duration.
    rate: float = 0.0
    #: With a positive value, the run alternates windows of this many seconds: faults
    #: start only in the odd ones; in the even ones (quiet) no fault starts, so timers,
    #: leases and push channels live past their natural lifetimes.
    quiet_period: float = 0.0
    #: A control run for power cuts: the source bank's ledger is never synced (SQLite
    #: ``synchronous=OFF``), so a power cut must lose entries it acknowledged, and the
    #: campaign must report them as violations.
    unsynced_bank: bool = False

    def __post_init__(self) -> None:
        available = kinds_for(self.backend)
        unknown = sorted(set(self.kinds) - set(available))
        if unknown:
            raise ValueError(
                f"kinds on the {self.backend} backend must be a selection of "
                f"{', '.join(available)}; got {', '.join(self.kinds)}"
            )
        if self.transfers < 1:
            raise ValueError(f"transfers must be at least 1, got {self.transfers}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.faults < 0:
            raise ValueError(f"faults must not be negative, got {self.faults}")
        if self.workers < 2:
            raise ValueError(
                f"workers must be at least 2 (one takes over a killed one), got {self.workers}"
            )
        if self.duration <= 0:
            raise ValueError(f"duration must be positive, got {self.duration}")
        if self.rate < 0:
            raise ValueError(f"rate must not be negative, got {self.rate}")
        if self.quiet_period < 0:
            raise ValueError(f"quiet_period must not be negative, got {self.quiet_period}")
        if self.quiesce_timeout <= 0:
            raise ValueError(f"quiesce_timeout must be positive, got {self.quiesce_timeout}")
        if self.unsynced_bank and not self.power_cuts:
            raise ValueError(f"unsynced_bank is a control for power cuts: add {POWER_CUT} to kinds")

    @property
    def fault_kinds(self) -> tuple[str, ...]:
        """The kinds faults are drawn from: the chosen ones, or the backend's default ones."""
        return self.kinds or default_kinds(self.backend)

    @property
    def power_cuts(self) -> bool:
        """Whether the campaign may cut the power (its data files then sit on the power-cut FS)."""
        return POWER_CUT in self.fault_kinds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CampaignParams:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        if "kinds" in known:
            known["kinds"] = tuple(known["kinds"])
        return cls(**known)


@dataclass(frozen=True)
class PlannedTransfer:
    transfer_id: str
    source_account: str
    target_account: str
    amount: int


@dataclass(frozen=True)
class Fault:
    """One fault: at ``at`` seconds into the campaign, do ``kind`` to ``target``.

    ``duration`` is how long the fault lasts: a killed process's downtime, a
    pause, the lifetime of a bank rule, how long an account stays closed, or how
    long an operator action looks for a transfer to act on.
    ``op_kind``, ``times`` and ``latency_ms`` only matter for bank rules.
    """

    at: float
    kind: str
    target: str
    duration: float
    op_kind: str | None = None
    times: int | None = None
    latency_ms: int = 0
    #: A clock fault's step in seconds (forward when positive), undone after ``duration``.
    clock_step: float = 0.0
    #: An operator action's choice among the transfers that fit its ``target``
    #: (:data:`OPERATOR_PICKS`) when it strikes: the ``pick``-th, modulo their number.
    pick: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def bank_rule(self) -> dict[str, Any]:
        """This fault as a rule for the bank's ``PUT /admin/faults``."""
        if self.kind not in BANK_RULE_KINDS:
            raise ValueError(f"a {self.kind} fault is not a bank rule")
        return {
            "action": self.kind,
            "kind": self.op_kind,
            "op_id": None,
            "latency_ms": self.latency_ms,
            "times": self.times,
        }

    def describe(self) -> str:
        extra = ""
        if self.kind in BANK_RULE_KINDS:
            extra = f" op={self.op_kind or 'any'} times={self.times}"
            if self.kind == LATENCY:
                extra += f" latency={self.latency_ms}ms"
        if self.kind in CLOCK_KINDS:
            extra = f" step={self.clock_step:+g}s"
        if self.kind in OPERATOR_PICKS:
            extra = f" pick={self.pick}"
        return f"t+{self.at:6.2f}s {self.kind} {self.target} for {self.duration:.2f}s{extra}"


@dataclass(frozen=True)
class Campaign:
    params: CampaignParams
    accounts: tuple[Account, ...]
    transfers: tuple[PlannedTransfer, ...]
    faults: tuple[Fault, ...] = field(default=())

    def opening_total(self) -> int:
        return opening_total(self.accounts)


def plan(params: CampaignParams) -> Campaign:
    """The whole campaign for ``params``: accounts, transfers and fault schedule."""
    workload_rng = random.Random(f"crossbank-chaos-workload:{params.seed}")
    fault_rng = random.Random(f"crossbank-chaos-faults:{params.seed}")
    accounts = plan_accounts(params.transfers)
    transfers = plan_transfers(workload_rng, params.seed, params.transfers, accounts)
    target_accounts = [a.account_id for a in accounts if a.bank == "target"]
    faults = plan_faults(
        fault_rng,
        params.faults,
        params.duration,
        params.workers,
        target_accounts,
        kinds=params.fault_kinds,
        backend=params.backend,
        quiet_period=params.quiet_period,
    )
    return Campaign(params, accounts, transfers, faults)


def plan_accounts(transfer_count: int) -> tuple[Account, ...]:
    """Source accounts funded for about three quarters of what will be asked of them.

    So the run sees all three outcomes: most transfers commit, some are
    compensated (a closed target), and the later ones start meeting
    insufficient funds.
    """
    per_account = max(1, transfer_count // ACCOUNTS_PER_BANK)
    opening = max(20_000, int(per_account * _MEAN_AMOUNT * 0.75))
    sources = [Account("source", f"src-{i + 1}", opening) for i in range(ACCOUNTS_PER_BANK)]
    targets = [Account("target", f"dst-{i + 1}", 10_000) for i in range(ACCOUNTS_PER_BANK)]
    return (*sources, *targets)


def plan_transfers(
    rng: random.Random, seed: int, count: int, accounts: tuple[Account, ...]
) -> tuple[PlannedTransfer, ...]:
    sources = [a for a in accounts if a.bank == "source"]
    targets = [a for a in accounts if a.bank == "target"]
    planned = []
    for index in range(count):
        source = rng.choice(sources)
        target = rng.choice(targets)
        if rng.random() < _OVERSIZED_SHARE:
            amount = source.opening_balance + rng.randint(1, source.opening_balance)
        else:
            amount = rng.randint(100, 2 * _MEAN_AMOUNT - 100)
        planned.append(
            PlannedTransfer(
                transfer_id=f"chaos-{seed}-{index:06d}",
                source_account=source.account_id,
                target_account=target.account_id,
                amount=amount,
            )
        )
    return tuple(planned)


def plan_faults(
    rng: random.Random,
    count: int,
    duration: float,
    workers: int,
    target_accounts: list[str],
    *,
    kinds: tuple[str, ...] = FAULT_KINDS,
    backend: str = STORE_BACKEND,
    quiet_period: float = 0.0,
) -> tuple[Fault, ...]:
    """``count`` faults of ``kinds`` spread over ``duration``; each kind appears when count allows.

    With ``quiet_period``, the faults start only in every other window of that
    length (the first window has faults, the second is quiet, and so on).
    """
    chosen = [kind for kind in FAULT_KINDS if kind in kinds]
    planned = chosen[: min(count, len(chosen))]
    weights = [_KIND_WEIGHTS[kind] for kind in chosen]
    planned += rng.choices(chosen, weights, k=count - len(planned))
    rng.shuffle(planned)
    times = sorted(
        round(_outside_quiet(rng.uniform(0.02, 0.9), duration, quiet_period), 3)
        for _ in range(count)
    )
    return tuple(
        _fault(rng, at, kind, workers, target_accounts, backend)
        for at, kind in zip(times, planned, strict=True)
    )


def _outside_quiet(share: float, duration: float, quiet_period: float) -> float:
    """The moment ``share`` of the way through the busy windows of ``duration``."""
    if quiet_period <= 0 or quiet_period * 2 > duration:
        return share * duration
    starts = [n * 2 * quiet_period for n in range(int(duration // (2 * quiet_period)) + 1)]
    windows = [(start, min(quiet_period, duration - start)) for start in starts if start < duration]
    left = share * sum(length for _, length in windows)
    for start, length in windows:
        if left <= length:
            return start + left
        left -= length
    return duration


def _fault(
    rng: random.Random,
    at: float,
    kind: str,
    workers: int,
    target_accounts: list[str],
    backend: str,
) -> Fault:
    # A paused postmaster would not stop its backends: on Postgres only crossbank's own
    # processes are paused, and the database is only ever killed.
    store = [STORE] if backend == STORE_BACKEND else []
    processes = [*(worker_name(i) for i in range(workers)), SOURCE_BANK, TARGET_BANK, *store]
    if kind == KILL_WORKER:
        return Fault(at, kind, worker_name(rng.randrange(workers)), _seconds(rng, 0.1, 2.0))
    if kind == KILL_SOURCE_BANK:
        return Fault(at, kind, SOURCE_BANK, _seconds(rng, 0.1, 1.5))
    if kind == KILL_TARGET_BANK:
        return Fault(at, kind, TARGET_BANK, _seconds(rng, 0.1, 1.5))
    if kind == KILL_STORE:
        return Fault(at, kind, STORE, _seconds(rng, 0.1, 1.5))
    if kind == KILL_POSTGRES:
        return Fault(at, kind, POSTGRES, _seconds(rng, 0.1, 1.5))
    if kind == PAUSE:
        return Fault(at, kind, rng.choice(processes), _seconds(rng, 0.3, 3.0))
    if kind == CLOSE_ACCOUNT:
        return Fault(at, kind, rng.choice(target_accounts), _seconds(rng, 1.0, 10.0))
    if kind in LINK_KINDS:
        near = LINK_KINDS[kind].near
        target = CLIENT if near == CLIENT else worker_name(rng.randrange(workers))
        return Fault(at, kind, target, _seconds(rng, 1.0, 8.0))
    if kind in DISK_KINDS:
        return Fault(at, kind, DISK_KINDS[kind], _seconds(rng, 0.5, 5.0))
    if kind == POWER_CUT:
        return Fault(at, kind, MACHINE, _seconds(rng, 0.1, 1.0))
    if kind in CLOCK_KINDS:
        step = _seconds(rng, 1.0, 30.0) * rng.choice((1, -1))
        return Fault(at, kind, CLOCK_KINDS[kind], _seconds(rng, 1.0, 8.0), clock_step=step)
    if kind in OPERATOR_PICKS:
        # ``duration``: how long the action may look for a transfer that fits.
        target = rng.choice(OPERATOR_PICKS[kind])
        return Fault(at, kind, target, _seconds(rng, 1.0, 8.0), pick=rng.randrange(1_000_000))
    if kind in BANK_RULE_KINDS:
        bank = rng.choice((SOURCE_BANK, TARGET_BANK))
        op_kind = rng.choice((*_BANK_OP_KINDS[bank], None))
        times = rng.choice((1, 2, 3, 5, None))
        latency_ms = rng.randint(50, 6_000) if kind == LATENCY else 0
        return Fault(at, kind, bank, _seconds(rng, 0.5, 4.0), op_kind, times, latency_ms)
    raise ValueError(f"unknown fault kind {kind!r}")


def _seconds(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 3)


def campaign_to_dict(campaign: Campaign) -> dict[str, Any]:
    """The plan as JSON-ready data, for the results file."""
    return {
        "params": campaign.params.to_dict(),
        "accounts": [asdict(a) for a in campaign.accounts],
        "faults": [f.to_dict() for f in campaign.faults],
    }
