"""``crossbank demo``: the whole system as local processes, and the three outcomes of a transfer.

No Docker: both banks, the served promise store and a worker start with
``python -m <package>`` (as compose and the tests start them) on free ports,
with their ledgers, store and logs under one data directory. The demo then
drives them through the same functions the ``crossbank`` commands use,
printing each command as a user would type it, and stops every process it
started on the way out, whatever happens (Ctrl-C included).
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.cli import commands
from orchestrator.local import crash_demo
from orchestrator.local.stage import DemoOptions, command, run_scenes, say, show, transfer
from orchestrator.local.system import TARGET, LocalSystem, wait_for_hold
from orchestrator.records import op_id
from orchestrator.settings import Settings

# -- the scenes ------------------------------------------------------------------------------


async def seed(settings: Settings) -> None:
    command("accounts seed")
    show(await commands.seed_command(settings))


async def committed(settings: Settings) -> dict[str, Any]:
    return dict((await transfer(settings, "alice", "carol", "25.00")).data)


async def compensated(system: LocalSystem, settings: Settings) -> dict[str, Any]:
    """Close the target account while the credit is on its way: the bank refuses it, the saga reverses."""
    transfer_id = f"demo-comp-{int(time.time())}"
    credit = op_id(transfer_id, "credit")
    async with system.bank(TARGET) as target:
        await target.set_faults(
            [{"action": "hold_before", "kind": "credit", "op_id": credit, "times": 1}]
        )
        say(
            "  (the target bank will hold this transfer's credit so the account can close meanwhile)"
        )
        await transfer(settings, "bob", "frank", "40.00", transfer_id=transfer_id, wait=False)
        await wait_for_hold(target, credit)
        say("    ... bob has been debited; the credit to frank is held at the target bank")
        command("accounts close frank --bank target")
        show(
            await commands.account_command(
                settings, "frank", bank="target", action="close", opening=None
            )
        )
        await target.clear_faults()
        say("    ... the held credit goes on, and the target bank refuses it: frank is closed")
    reply = await transfer(settings, "bob", "frank", "40.00", transfer_id=transfer_id)
    command(f"status {transfer_id}")
    show(await commands.status_command(settings, transfer_id))
    return dict(reply.data)


async def failed(settings: Settings) -> dict[str, Any]:
    return dict((await transfer(settings, "erin", "dave", "50.00")).data)


async def closing(settings: Settings) -> bool:
    command("balances")
    show(await commands.balances_command(settings))
    command("audit")
    reply = await commands.audit_command(settings)
    show(reply)
    return reply.code == commands.OK


async def scenes(system: LocalSystem) -> bool:
    settings = system.settings
    say("\n== 1. demo accounts on both banks")
    await seed(settings)
    say("\n== 2. a transfer that commits")
    outcomes = [(await committed(settings))["status"] == "committed"]
    say("\n== 3. a transfer that is compensated (the target account closes on the way)")
    outcomes.append((await compensated(system, settings))["status"] == "compensated")
    say("\n== 4. a transfer that fails (erin has 10.00 and sends 50.00)")
    outcomes.append((await failed(settings))["status"] == "failed")
    say("\n== 5. the crash demo")
    outcomes.append(await crash_demo.crash(system))
    say("\n== 6. where the money is")
    outcomes.append(await closing(settings))
    return all(outcomes)


def main(options: DemoOptions) -> int:
    """``crossbank demo``."""
    return run_scenes("demo", scenes, options)
