"""``crossbank crash-demo``: SIGKILL the worker in the middle of a transfer; the transfer finishes anyway.

The target bank holds the transfer's credit request (its fault injection,
``hold_before``), so the worker is killed at an exact point: the debit is
applied and recorded, the credit is in flight. Nothing about that is staged
afterwards: the ledgers are shown half done, a new worker starts, the promise
store hands it the transfer once the killed worker's lease lapses, the saga
replays (the recorded debit is not sent again) and the credit is applied
exactly once, whether or not the held request had already reached the ledger.
"""

from __future__ import annotations

import time

from orchestrator import money
from orchestrator.cli import commands
from orchestrator.local.stage import DemoOptions, command, run_scenes, say, show, transfer
from orchestrator.local.system import LocalSystem, wait_for_hold
from orchestrator.records import op_id

SOURCE, TARGET, AMOUNT = "alice", "dave", "75.00"


async def crash(system: LocalSystem) -> bool:
    """Run the crash scene on a running system with a live worker; True when it ended clean."""
    settings = system.settings
    transfer_id = f"crash-{int(time.time())}"
    credit = op_id(transfer_id, "credit")
    victim = system.running_workers()[0]

    async with system.banks() as (source, target):
        say("  the target bank will hold the next credit it receives (fault injection):")
        await target.set_faults([{"action": "hold_before", "kind": "credit", "times": 1}])
        say(
            '    PUT /admin/faults {"faults": [{"action": "hold_before", "kind": "credit", "times": 1}]}'
        )
        await transfer(settings, SOURCE, TARGET, AMOUNT, transfer_id=transfer_id, wait=False)
        say(f"  waiting until {victim.name} (pid {victim.pid}) is in the middle of the credit ...")
        hold = await wait_for_hold(target, credit)
        say(f"    the target bank is holding {hold['op_id']} (since {hold['since']})")

        say(f"  SIGKILL {victim.name} (pid {victim.pid})")
        victim.kill()
        killed_at = time.monotonic()

        say("  the ledgers now, half done: money has left the source and not arrived")
        debit_now = await source.get_entry(op_id(transfer_id, "debit"))
        credit_now = await target.get_entry(credit)
        say(f"    source  {op_id(transfer_id, 'debit'):<28} {_state(debit_now)}")
        say(f"    target  {credit:<28} {_state(credit_now)}")
        command(f"status {transfer_id}")
        show(await commands.status_command(settings, transfer_id))

        say("  releasing the hold at the target bank (DELETE /admin/faults)")
        await target.clear_faults()
        say("    (the released request may still reach the ledger with nobody to answer;")
        say("     the new worker's retry carries the same op id, so it cannot apply twice)")

    say(
        f"  starting a new worker; the store gives it the transfer once the lease lapses "
        f"(LEASE_TTL={settings.lease_ttl:g}s)"
    )
    replacement = system.start_worker()
    say(f"    {replacement.name} is up (pid {replacement.pid})")
    reply = await transfer(settings, SOURCE, TARGET, AMOUNT, transfer_id=transfer_id)
    say(f"    finished {time.monotonic() - killed_at:.1f}s after the SIGKILL")

    command(f"status {transfer_id}")
    show(await commands.status_command(settings, transfer_id))

    say("  every op of the transfer, as the ledgers have it:")
    counts = await _op_counts(system, transfer_id)
    for name, count in counts.items():
        say(f"    {name:<34} applied {count} time(s)")
    once = counts[op_id(transfer_id, "debit")] == 1 and counts[credit] == 1
    once = once and counts[op_id(transfer_id, "reversal")] == 0
    say(f"    {'each op applied exactly once' if once else 'UNEXPECTED: see the counts above'}")

    command("audit")
    verdict = await commands.audit_command(settings)
    show(verdict)
    return bool(reply.data.get("status") == "committed" and once and verdict.code == commands.OK)


def _state(entry: dict[str, object] | None) -> str:
    if entry is None:
        return "not applied"
    if entry.get("state") == "applied" and isinstance(entry.get("entry"), dict):
        row = entry["entry"]
        assert isinstance(row, dict)
        return f"applied ({money.format_cents(int(row['amount']))} on {row['account_id']})"
    return str(entry.get("state"))


async def _op_counts(system: LocalSystem, transfer_id: str) -> dict[str, int]:
    """How many ledger entries carry each of the transfer's op ids, over both banks."""
    names = [op_id(transfer_id, kind) for kind in ("debit", "credit", "reversal")]
    counts = dict.fromkeys(names, 0)
    for entry in await system.entries(transfer_id):
        if entry["op_id"] in counts:
            counts[entry["op_id"]] += 1
    return counts


async def standalone(system: LocalSystem) -> bool:
    settings = system.settings
    say("\n== demo accounts")
    command("accounts seed")
    show(await commands.seed_command(settings))
    say("\n== the crash")
    ok = await crash(system)
    say("\n== where the money is")
    command("balances")
    show(await commands.balances_command(settings))
    return ok


def main(options: DemoOptions) -> int:
    """``crossbank crash-demo``."""
    return run_scenes("crash-demo", standalone, options)
