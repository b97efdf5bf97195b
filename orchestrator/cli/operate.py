"""The operator's commands: list transfers, cancel one, retry one now, and see which saga versions run.

Each reads the promise store through the same client as ``status``
(:func:`orchestrator.cli.commands.promise_store`); ``cancel`` also reaches
both banks, whose void fence decides it. Exit codes are the CLI's: 0 when
the action took effect, 1 when it changed nothing (too late, finished, not
waiting), 2 for input or a store or bank that cannot be reached.
"""

from __future__ import annotations

import re
import shlex
import time
from datetime import UTC, datetime

from orchestrator import operations, operator_log, transfer_search
from orchestrator.bank_client import BankError
from orchestrator.cli.commands import (
    NOT_OK,
    OK,
    CliError,
    Reply,
    open_banks,
    promise_store,
)
from orchestrator.cli.views import describe_action, describe_transfers
from orchestrator.saga_versions import NEWEST, SAGAS, group_for
from orchestrator.settings import Settings
from orchestrator.transfers import InvalidTransferRequest, check_transfer_id

#: ``--since 90m``: a number and a unit, back from now.
_AGO = re.compile(r"(\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest ``--reason`` a bank keeps with a cancel.
MAX_REASON = 200


def parse_since(text: str, *, now: float | None = None) -> int:
    """``--since``: an ISO date or time (UTC unless it says), or a span back from now (``90m``,
    ``2h``, ``3d``); epoch milliseconds."""
    now = time.time() if now is None else now
    if match := _AGO.fullmatch(text.strip()):
        return int((now - int(match[1]) * _UNIT_SECONDS[match[2]]) * 1000)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"--since {text!r} is neither a date or time (2026-12-06, 2026-12-06T14:30) nor a "
            "span back from now (90m, 2h, 3d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


async def transfers_command(
    settings: Settings,
    *,
    status: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
) -> Reply:
    since_ms = parse_since(since) if since is not None else None
    try:
        if status is not None:
            status = transfer_search.normalize_status(status)
        async with promise_store(settings) as resonate:
            page = await transfer_search.list_transfers(
                resonate,
                status=status,
                since_ms=since_ms,
                limit=limit,
                cursor=cursor,
                attention_after=settings.attention_after,
            )
    except transfer_search.InvalidSearch as exc:
        raise CliError(str(exc)) from None
    again = ["crossbank", "transfers", "--limit", str(limit)]
    if status is not None:
        again += ["--status", status]
    if since is not None:
        again += ["--since", since]
    data = page.to_json()
    return Reply(OK, data, describe_transfers(data, next_command=shlex.join(again)))


async def cancel_command(
    settings: Settings, transfer_id: str, *, reason: str, by: str | None
) -> Reply:
    _check_id(transfer_id)
    reason, by = _note_text("--reason", reason), _note_text("--by", by or settings.operator)
    async with promise_store(settings) as resonate, open_banks(settings) as (source, target):
        try:
            done = await operations.cancel_transfer(
                resonate, source, target, transfer_id, by=by, reason=reason
            )
        except BankError as exc:  # its message names the bank; nothing was recorded
            raise CliError(f"cancel not done: {exc}") from exc
    return _done_reply(done)


async def retry_command(settings: Settings, transfer_id: str, *, by: str | None) -> Reply:
    _check_id(transfer_id)
    by = _note_text("--by", by or settings.operator)
    async with promise_store(settings) as resonate:
        done = await operations.retry_transfer(resonate, transfer_id, by=by)
    return _done_reply(done)


async def versions_command(settings: Settings) -> Reply:
    """Every saga version this code has, and how many unfinished transfers each still runs."""
    async with promise_store(settings) as resonate:
        unfinished = await transfer_search.unfinished_by_version(resonate)
    versions = sorted(set(SAGAS) | set(unfinished))
    rows = [
        {
            "version": version,
            "in_this_code": version in SAGAS,
            "group": group_for(settings.group, version),
            "unfinished": len(unfinished.get(version, [])),
            "unfinished_ids": sorted(unfinished.get(version, []))[:20],
        }
        for version in versions
    ]
    lines = [f"new transfers start on version {settings.saga_version or NEWEST} (SAGA_VERSION)"]
    for row in rows:
        if row["unfinished"]:
            state = (
                f"{row['unfinished']} unfinished transfer(s): keep workers that carry it "
                f"(group {row['group']})"
            )
        else:
            state = "no unfinished transfer: workers may stop carrying it"
        missing = "" if row["in_this_code"] else " (NOT in this code)"
        lines.append(f"version {row['version']}{missing}: {state}")
    data = {"starting_version": settings.saga_version or NEWEST, "versions": rows}
    return Reply(OK, data, "\n".join(lines))


async def actions_command(settings: Settings, *, limit: int) -> Reply:
    """``crossbank audit --actions``: the operator record, newest first."""
    async with promise_store(settings) as resonate:
        actions = await operator_log.all_actions(resonate, limit=limit)
    rows = [action.to_json() for action in actions]
    text = "\n".join(describe_action(row) for row in rows) or "no operator actions recorded"
    return Reply(OK, {"actions": rows}, text)


def _done_reply(done: operations.Done) -> Reply:
    text = done.message
    if done.record_error is not None:
        text += f"\nwarning: the operator record could not be written: {done.record_error}"
    return Reply(OK if done.took_effect else NOT_OK, done.to_json(), text)


def _check_id(transfer_id: str) -> None:
    try:
        check_transfer_id(transfer_id)
    except InvalidTransferRequest as exc:
        raise CliError(str(exc)) from None


def _note_text(flag: str, text: str) -> str:
    """What a bank keeps with a cancel: printable, 1 to MAX_REASON characters, not only spaces."""
    if not text.strip() or len(text) > MAX_REASON or not text.isprintable():
        raise CliError(f"{flag} must be 1 to {MAX_REASON} printable characters, got {text!r}")
    return text
