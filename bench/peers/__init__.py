"""The systems the harness compares, each behind one small async interface.

A system is opened with the banks' URLs and a scratch directory, and yields a
function that runs one transfer to its terminal status. Peers whose optional
packages or binaries are missing raise ``Unavailable`` with the reason, and
the harness reports that and moves on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from bench.banks import BankUrls
from bench.driver import RunTransfer


class Unavailable(RuntimeError):
    """This system cannot run on this machine; the message says why."""


OpenSystem = Callable[[BankUrls, Path], AbstractAsyncContextManager[RunTransfer]]


@dataclass(frozen=True)
class SystemEntry:
    """Where to find one system; imported lazily so a missing peer package is not fatal."""

    name: str
    module: str
    factory: str
    durable: bool = True

    def load(self) -> OpenSystem:
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            raise Unavailable(f"cannot import {self.module}: {exc}") from exc
        return cast(OpenSystem, getattr(module, self.factory))


SYSTEMS: tuple[SystemEntry, ...] = (
    SystemEntry("baseline (no durability)", "bench.peers.baseline", "open_baseline", durable=False),
    SystemEntry("crossbank embedded", "bench.peers.crossbank", "open_embedded"),
    SystemEntry("crossbank served, 1 worker", "bench.peers.crossbank", "open_served_one"),
    SystemEntry("crossbank served, 2 workers", "bench.peers.crossbank", "open_served_two"),
    SystemEntry("crossbank served, TLS", "bench.peers.crossbank", "open_served_tls"),
    SystemEntry("crossbank served, own banks", "bench.peers.crossbank", "open_served_own_banks"),
    SystemEntry("crossbank served, metrics", "bench.peers.crossbank", "open_served_metrics"),
    SystemEntry("crossbank served, traced", "bench.peers.crossbank", "open_served_traced"),
    SystemEntry("Resonate on Postgres", "bench.peers.resonate_postgres", "open_resonate_postgres"),
    SystemEntry("DBOS on PostgreSQL", "bench.peers.dbos_transact", "open_dbos"),
    SystemEntry("Restate", "bench.peers.restate_peer", "open_restate"),
)
