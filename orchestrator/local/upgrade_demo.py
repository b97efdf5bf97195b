"""``crossbank upgrade-demo``: change the saga while transfers run; each finishes on its own version.

The system starts with workers of the old code only (``SAGA_VERSIONS=1``)
and two transfers on version 1 that the target bank holds mid-credit. Then a
worker with the new code (``SAGA_VERSIONS=2``) starts and new transfers run
on version 2 beside them. ``crossbank versions`` says the old worker must
stay while version-1 transfers remain; once the holds are released and they
finish (on the old worker: the new one never receives them), it says the
old worker may go, and it is stopped. The worker logs show who ran what.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from orchestrator.cli import commands, operate
from orchestrator.local.stage import DemoOptions, command, run_scenes, say, show, transfer
from orchestrator.local.supervisor import ManagedProcess
from orchestrator.local.system import LocalSystem, wait_for_hold
from orchestrator.records import op_id

SOURCE, TARGET, AMOUNT = "alice", "carol", "10.00"


async def upgrade(system: LocalSystem) -> bool:
    """The rolling upgrade on a running system; True when every transfer ran on its version."""
    settings = system.settings
    stamp = int(time.time())
    old_ids = [f"v1-{stamp}-{n}" for n in (1, 2)]
    new_ids = [f"v2-{stamp}-{n}" for n in (1, 2)]

    say("  the old code only: every worker is replaced by one that carries saga version 1")
    for worker in system.running_workers():
        worker.stop()
    old = await asyncio.to_thread(system.start_worker, env={"SAGA_VERSIONS": "1"})
    say(f"    SAGA_VERSIONS=1 crossbank worker   ({old.name}, pid {old.pid}, log {old.log_path})")

    async with system.banks() as (_, target):
        rules = [
            {"action": "hold_before", "op_id": op_id(t, "credit"), "times": 1} for t in old_ids
        ]
        await target.set_faults(rules)
        say("  the target bank will hold both version-1 credits (fault injection)")
        for transfer_id in old_ids:
            command(
                f"transfer --from {SOURCE} --to {TARGET} --amount {AMOUNT} --id {transfer_id} "
                "--no-wait   # with SAGA_VERSION=1"
            )
            await commands.transfer_command(
                replace(settings, saga_version=1),
                source=SOURCE,
                target=TARGET,
                amount=AMOUNT,
                transfer_id=transfer_id,
                wait=False,
            )
        for transfer_id in old_ids:
            await wait_for_hold(target, op_id(transfer_id, "credit"))
        say("    both are mid-credit on the old worker")

        say("  the new code arrives: a worker that carries saga version 2")
        new = await asyncio.to_thread(system.start_worker, env={"SAGA_VERSIONS": "2"})
        say(
            f"    SAGA_VERSIONS=2 crossbank worker   ({new.name}, pid {new.pid}, log {new.log_path})"
        )
        say("  new transfers start on version 2 (SAGA_VERSION's default) and run there:")
        for transfer_id in new_ids:
            await transfer(settings, SOURCE, TARGET, AMOUNT, transfer_id=transfer_id)
        command("versions")
        show(await operate.versions_command(settings))

        say("  the holds are released: the version-1 transfers finish, on the old worker")
        await target.clear_faults()
    for transfer_id in old_ids:
        await transfer(settings, SOURCE, TARGET, AMOUNT, transfer_id=transfer_id)
    command("versions")
    left = await operate.versions_command(settings)
    show(left)
    unfinished_v1 = next(row["unfinished"] for row in left.data["versions"] if row["version"] == 1)
    if unfinished_v1 == 0:
        say(f"  no version-1 transfer is left: stopping {old.name}")
        old.stop()

    say("  who ran what, from the workers' logs:")
    right = True
    for transfer_id, runner, other in [
        *((t, old, new) for t in old_ids),
        *((t, new, old) for t in new_ids),
    ]:
        on_runner, on_other = _ran(runner, transfer_id), _ran(other, transfer_id)
        right = right and on_runner and not on_other
        say(
            f"    {transfer_id:<18} ran on {runner.name if on_runner else '?'}"
            + ("" if not on_other else f" AND {other.name} (unexpected)")
        )
    command("audit")
    verdict = await commands.audit_command(settings)
    show(verdict)
    return right and unfinished_v1 == 0 and verdict.code == commands.OK


def _ran(worker: ManagedProcess, transfer_id: str) -> bool:
    """Whether ``worker``'s log shows a step of ``transfer_id``."""
    if worker.log_path is None or not worker.log_path.exists():
        return False
    return f"transfer {transfer_id} " in worker.log_path.read_text(errors="replace")


async def standalone(system: LocalSystem) -> bool:
    say("\n== demo accounts")
    command("accounts seed")
    show(await commands.seed_command(system.settings))
    say("\n== a rolling upgrade of the saga, from version 1 to 2")
    return await upgrade(system)


def main(options: DemoOptions) -> int:
    """``crossbank upgrade-demo``."""
    return run_scenes("upgrade-demo", standalone, options)
