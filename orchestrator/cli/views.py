"""What the CLI shows a person: transfers, their timelines, balances and audits, as text.

Pure functions from the data a command gathered (the same data ``--json``
prints) to lines a person reads, kept apart from the commands so wording can
change without touching what the commands do, and be tested without a bank.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator import audit, money, records


def describe_result(result: dict[str, Any]) -> str:
    """One or two lines a person reads to know where the money is."""
    amount = money.format_cents(result["amount"])
    route = f"{amount} from {result['source_account']} to {result['target_account']}"
    cancelled = result.get("cancelled")
    if isinstance(cancelled, dict) and result["status"] in ("failed", "compensated"):
        where = (
            "nothing moved"
            if result["status"] == "failed"
            else f"the debit was reversed, so the {amount} is back in "
            f"{result['source_account']}'s account"
        )
        return (
            f"transfer {result['transfer_id']}: {result['status']} (cancelled)\n"
            f"  cancelled by {cancelled.get('by')}: {cancelled.get('reason')}; {where}"
        )
    match result["status"]:
        case "committed":
            return f"transfer {result['transfer_id']}: committed\n  moved {route}"
        case "compensated":
            return (
                f"transfer {result['transfer_id']}: compensated ({result['reason']})\n"
                f"  the target bank did not take {route}; the debit was reversed, "
                f"so the {amount} is back in {result['source_account']}'s account"
            )
        case "failed":
            return (
                f"transfer {result['transfer_id']}: failed ({result['reason']})\n"
                f"  nothing moved: the source bank refused to debit {route}"
            )
    return f"transfer {result['transfer_id']}: {result['status']}"


#: A transfer status as a person reads it, where it is not the status itself.
_STATUS_WORDS = {"in_progress": "in progress"}


def status_word(record: dict[str, Any]) -> str:
    """The ``status`` that ``transfers.transfer_record`` decided, in words."""
    status = str(record["status"])
    return _STATUS_WORDS.get(status, status)


def describe_status(view: dict[str, Any], *, kept_in: str = "promise store") -> str:
    """``crossbank status`` in words; ``kept_in`` names where the timeline's figures come from."""
    request = view.get("request") or {}
    lines = [f"transfer {view['transfer_id']}: {view['status']}"]
    if view.get("needs_attention"):
        lines[0] += "  ** NEEDS ATTENTION: compensating for too long **"
    if request:
        lines.append(
            f"  {money.format_cents(request['amount'])} from {request['source_account']} "
            f"(source bank) to {request['target_account']} (target bank)"
        )
    if view.get("saga_version") is not None:
        lines.append(f"  saga version {view['saga_version']}")
    result = view.get("result")
    if isinstance(result, dict) and result.get("reason"):
        lines.append(f"  reason: {result['reason']}")
    if isinstance(result, dict) and isinstance(cancelled := result.get("cancelled"), dict):
        lines.append(
            f"  cancelled by {cancelled.get('by')} at {cancelled.get('at')}: "
            f"{cancelled.get('reason')}"
        )
    if view.get("error"):
        lines.append(f"  error: {view['error']}")
    lines.append(f"  timeline ({kept_in}):")
    for row in timeline_rows(view):
        clock = f"{_ms_clock(row['at'])}  " if row["id"] is not None else ""
        lines.append(f"    {clock}{row['what']}")
    lines.append("  ledgers:")
    for row in ledger_rows(view):
        lines.append(f"    {row['bank']:<7} {row['kind']:<9} {row['text']}")
    if view.get("operator_actions"):
        lines.append("  operator actions:")
        lines.extend(f"    {describe_action(action)}" for action in view["operator_actions"])
    return "\n".join(lines)


def describe_action(action: dict[str, Any]) -> str:
    """One operator action: when, what, by whom, why and what came of it."""
    at = datetime.fromtimestamp(float(action["at"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
    why = f" ({action['reason']})" if action.get("reason") else ""
    return (
        f"{at}  {action['action']} {action['transfer_id']} by {action['by']}{why}: "
        f"{action['outcome']}"
    )


def describe_transfers(page: dict[str, Any], *, next_command: str) -> str:
    """``crossbank transfers``: one line per transfer, newest first, and how to see more."""
    rows = page["transfers"]
    if not rows:
        return "no transfers"
    lines = [f"{'started (UTC)':<19}  {'transfer':<24} {'status':<14} {'amount':>12}  v  accounts"]
    for row in rows:
        request = row.get("request") or {}
        started = (
            datetime.fromtimestamp(row["created_at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            if row.get("created_at")
            else "?"
        )
        status = status_word(row) + (" !" if row.get("needs_attention") else "")
        amount = money.format_cents(request["amount"]) if "amount" in request else "?"
        lines.append(
            f"{started:<19}  {row['transfer_id']:<24} {status:<14} {amount:>12}  "
            f"{row['saga_version']}  {request.get('source_account', '?')} -> "
            f"{request.get('target_account', '?')}"
            + (f"  ({row['reason']})" if row.get("reason") else "")
        )
    if any(row.get("needs_attention") for row in rows):
        lines.append("! needs attention: compensating for longer than ATTENTION_AFTER")
    if page.get("cursor"):
        lines.append(f"more: {next_command} --cursor {page['cursor']}")
    return "\n".join(lines)


def timeline_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    """``crossbank status``'s timeline as rows: ``{"at": epoch ms or None, "id", "step", "what"}``.

    ``id`` is the promise (the transfer's, or a step's), ``step`` what it
    recorded, and ``what`` the line's text after the time. Shared by the
    CLI's text and the console's page.
    """
    times = {t["id"]: t for t in view.get("timeline", [])}
    transfer_id = view["transfer_id"]
    root = times.get(transfer_id, {})
    rows = [{"at": root.get("created_at"), "id": transfer_id, "step": "started", "what": "started"}]
    if not view["steps"]:
        waiting = "(no step recorded yet: waiting for a worker)"
        rows.append({"at": None, "id": None, "step": waiting, "what": waiting})
    for step in view["steps"]:
        at = times.get(step["id"], {})
        when = at.get("settled_at") or at.get("created_at")
        described = _describe_step(step)
        line = f"{step['id']:<26} {described}"
        rows.append({"at": when, "id": step["id"], "step": described, "what": line})
    if root.get("settled_at"):
        done = f"done: {view['status']}"
        rows.append({"at": root["settled_at"], "id": transfer_id, "step": done, "what": done})
    return rows


def ledger_rows(view: dict[str, Any]) -> list[dict[str, str]]:
    """Each op id as its bank has it: ``{"bank", "kind", "text"}`` (``crossbank status``'s ledgers)."""
    return [
        {"bank": bank, "kind": kind, "text": _describe_entry(view["ledger"].get(kind))}
        for kind, bank in (("debit", "source"), ("credit", "target"), ("reversal", "source"))
    ]


def ms_clock(epoch_ms: int | None) -> str:
    """Epoch milliseconds as UTC ``HH:MM:SS.mmm`` (blank when unknown), as the timeline shows them."""
    return _ms_clock(epoch_ms)


def _describe_step(step: dict[str, Any]) -> str:
    value = step.get("value")
    if step.get("timer"):
        if step["state"] == "pending":
            return (
                f"waiting until {_ms_clock(step.get('wait_until'))} before the next attempt "
                "(crossbank retry makes it now)"
            )
        return "waited"
    if step["state"] == "pending":
        return "running"
    if step["state"] != "resolved" or not isinstance(value, dict):
        return f"{step['state']}: {step.get('error') or ''}".rstrip(": ")
    record = records.parse_step_value(value)
    if isinstance(record, records.Compensation):
        return f"compensating since {_clock(record.since)} ({record.reason})"
    if record is None:  # no record of this saga (an older one's "finished" step, say)
        return f"{value.get('step', '?')}: {value.get('status') or value.get('state')}"
    text = f"{record.kind}: {record.status}"
    if record.code:
        text += f" ({record.code})"
    if record.settled_by != "bank":
        text += f", settled by the {record.settled_by}"
    return text


def _describe_entry(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    if entry.get("state") == "voided":
        return "voided (fenced: it never happened and never will)"
    if entry.get("state") != "applied":
        return str(entry.get("state"))
    row = entry.get("entry") or {}
    return (
        f"applied  {money.format_cents(row.get('amount', 0)):>10} on {row.get('account_id')}"
        f" at {row.get('created_at', '?')}"
    )


def _ms_clock(epoch_ms: int | None) -> str:
    """Epoch milliseconds as UTC ``HH:MM:SS.mmm``, the promise store's resolution."""
    if not epoch_ms:
        return " " * 12
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def _clock(epoch: float | None) -> str:
    if epoch is None:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def balances_data(accounts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "banks": accounts,
        "total": sum(a["balance"] for bank in accounts.values() for a in bank),
        "opening_total": sum(
            a.get("opening_balance", 0) for bank in accounts.values() for a in bank
        ),
    }


def describe_balances(accounts: dict[str, list[dict[str, Any]]]) -> str:
    lines = [f"{'bank':<7} {'account':<16} {'status':<7} {'balance':>16}"]
    for bank, rows in accounts.items():
        if not rows:
            lines.append(f"{bank:<7} (no accounts)")
        for row in rows:
            lines.append(
                f"{bank:<7} {row['account_id']:<16} {row['status']:<7} "
                f"{money.format_cents(row['balance']):>16}"
            )
    data = balances_data(accounts)
    lines.append(
        f"{'total':<32} {money.format_cents(data['total']):>16}"
        f"  (opening balances: {money.format_cents(data['opening_total'])})"
    )
    return "\n".join(lines)


def describe_audit(summary: dict[str, Any], violations: list[audit.Violation]) -> str:
    """``audit: clean (...)``, or each violation with the entries that show it."""
    scope = (
        f"{summary['accounts']} accounts, {summary['entries']} entries, "
        f"total balance {money.format_cents(summary['total_balance'])}"
    )
    if summary["in_flight"]:
        scope += f", {len(summary['in_flight'])} transfer(s) still in flight"
    if not violations:
        return f"audit: clean ({scope})"
    counts = ", ".join(f"{n} {name}" for name, n in sorted(audit.summarize(violations).items()))
    lines = [f"audit: {len(violations)} violation(s): {counts} ({scope})"]
    for violation in violations:
        about = f" transfer {violation.transfer_id}" if violation.transfer_id else ""
        lines.append(f"  [{violation.invariant}]{about}: {violation.detail}")
        for entry in violation.entries:
            lines.append(
                f"      entry {entry.get('op_id')}: {entry.get('kind')} "
                f"{money.format_cents(entry.get('amount', 0))} on {entry.get('account_id')} "
                f"(seq {entry.get('seq')})"
            )
    return "\n".join(lines)
