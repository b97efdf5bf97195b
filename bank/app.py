"""The bank's HTTP API as a Flask application (bank/README.md, "API").

Views are thin: parse with :mod:`bank.validation`, run fault rules with
:mod:`bank.faults`, write with :mod:`bank.ledger`, answer JSON. Every error,
including unknown routes and methods, is a JSON ``{"error": {code, message}}``.
A write the ledger's storage refused (disk full, I/O error) answers 503
``storage_unavailable`` and turns ``/health`` to 503 until the bank can write
again (:mod:`bank.storage_health`). ``GET /metrics`` serves the bank's
Prometheus metrics (:mod:`bank.metrics`), behind the same checks as every call.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from bank import tracing
from bank.config import BankConfig
from bank.connection import drop_client_connection
from bank.faults import FaultInjector, Outcome, Target, parse_rules
from bank.ledger import Cancelled, Conflict, Ledger, LedgerError, Rejected
from bank.metrics import BankMetrics
from bank.storage_health import StorageHealth, is_storage_error
from bank.validation import (
    MAX_BODY_BYTES,
    InvalidRequest,
    check_fields,
    check_id,
    parse_account_update,
    parse_entry_query,
    parse_entry_request,
    parse_json_object,
    parse_void_request,
)

log = logging.getLogger("bank")

#: The only path anyone may call when a token is set: supervisors and healthchecks probe it.
_OPEN_PATHS = frozenset({"/health"})


@dataclass
class BankState:
    """What the views share: the config, the ledger, (when enabled) the fault rules, the metrics."""

    config: BankConfig
    ledger: Ledger
    faults: FaultInjector | None
    storage: StorageHealth
    metrics: BankMetrics


def create_app(config: BankConfig, ledger: Ledger | None = None) -> Flask:
    """Build the bank's WSGI app; it owns ``ledger`` (opened from the config if not given)."""
    app = Flask(f"bank.{config.name}")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # No redirects (they would answer HTML): "/entries//x" is simply not a route.
    app.url_map.merge_slashes = False
    faults = FaultInjector(config.initial_faults) if config.faults_enabled else None
    ledger = ledger or Ledger(config.ledger_path)
    app.extensions["bank"] = BankState(
        config,
        ledger,
        faults,
        StorageHealth(config.ledger_path),
        BankMetrics(config.name, ledger),
    )

    # First in, last out: the clock runs before a check may answer early, and
    # stops after every other hook (Flask calls after_request hooks in reverse).
    app.before_request(_start_clock)
    app.after_request(_time_request)
    tracing.install(app, config.name)
    app.before_request(_refuse_other_sites)
    app.before_request(_require_token)
    app.after_request(_note_write)
    app.register_error_handler(InvalidRequest, _invalid_request)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)

    app.get("/health")(health)
    app.get("/metrics")(metrics)
    app.get("/accounts")(list_accounts)
    app.get("/accounts/<account_id>")(get_account)
    app.put("/accounts/<account_id>")(put_account)
    app.post("/entries")(post_entry)
    app.get("/entries")(list_entries)
    app.get("/entries/<op_id>")(get_entry)
    app.post("/entries/<op_id>/void")(void_entry)
    if faults is not None:
        app.get("/admin/faults")(get_faults)
        app.put("/admin/faults")(put_faults)
        app.delete("/admin/faults")(delete_faults)
        app.get("/admin/holds")(get_holds)
        app.post("/admin/holds/release")(release_holds)
    return app


def bank_state(app: Flask | None = None) -> BankState:
    state: BankState = (app or current_app).extensions["bank"]
    return state


# -- views ----------------------------------------------------------------------


def health() -> tuple[Response, int]:
    state = bank_state()
    failure = state.storage.failure()
    if failure is not None:
        return jsonify(status="failing", bank=state.config.name, reason=failure), 503
    return jsonify(status="ok", bank=state.config.name), 200


def metrics() -> Response:
    return Response(bank_state().metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


def list_accounts() -> Response:
    accounts = bank_state().ledger.list_accounts()
    return jsonify(accounts=[account.to_json() for account in accounts])


def get_account(account_id: str) -> tuple[Response, int]:
    account = bank_state().ledger.get_account(check_id("account_id", account_id))
    if account is None:
        return _error(404, "unknown_account", f"no account {account_id}")
    return jsonify(account.to_json()), 200


def put_account(account_id: str) -> tuple[Response, int]:
    check_id("account_id", account_id)
    update = parse_account_update(_body())
    try:
        account, created = bank_state().ledger.put_account(
            account_id, update.status, update.opening_balance
        )
    except LedgerError as exc:
        return _ledger_error(exc)
    return jsonify(account.to_json()), 201 if created else 200


def post_entry() -> tuple[Response, int]:
    entry_request = parse_entry_request(_body())
    state = bank_state()
    tracing.note_op_id(entry_request.op_id)
    target = Target(entry_request.op_id, entry_request.kind)
    if _fault(state, target, "before") is not None:
        return _injected()
    try:
        entry, created = state.ledger.post_entry(
            entry_request.op_id, entry_request.account_id, entry_request.kind, entry_request.amount
        )
        result = jsonify(entry.to_json()), 201 if created else 200
        outcome: bool | LedgerError = created
    except LedgerError as exc:
        result, outcome = _ledger_error(exc), exc
    state.metrics.entry_answered(entry_request.kind, outcome)
    return _after(state, target, result)


def get_entry(op_id: str) -> tuple[Response, int]:
    op = bank_state().ledger.op_state(check_id("op_id", op_id))
    if op is None:
        return _error(404, "unknown_op", f"no entry and no void for op {op_id}")
    return jsonify(op.to_json()), 200


def void_entry(op_id: str) -> tuple[Response, int]:
    check_id("op_id", op_id)
    note = parse_void_request(_body())
    tracing.note_op_id(op_id)
    state = bank_state()
    target = Target(op_id, None)
    if _fault(state, target, "before") is not None:
        return _injected()
    op, voided_now = state.ledger.void(op_id, note)
    state.metrics.void_answered(op.state, voided_now)
    if voided_now and op.cancelled is not None:
        log.info(
            "op %s cancelled by %s: %s",
            op_id,
            op.cancelled.by,
            op.cancelled.reason,
            extra={"op_id": op_id},
        )
    return _after(state, target, (jsonify(op.to_json()), 200))


def list_entries() -> Response:
    query = parse_entry_query(request.args.to_dict(flat=True))
    page = bank_state().ledger.list_entries(query.account_id, query.after, query.limit + 1)
    more = len(page) > query.limit
    page = page[: query.limit]
    return jsonify(
        entries=[entry.to_json() for entry in page],
        next_after=page[-1].seq if more else None,
    )


def get_faults() -> Response:
    return jsonify(faults=_injector().rules())


def put_faults() -> Response:
    body = parse_json_object(_body())
    check_fields(body, required=("faults",))
    return jsonify(faults=_injector().replace(parse_rules(body["faults"])))


def delete_faults() -> Response:
    _injector().clear()
    return jsonify(faults=[])


def get_holds() -> Response:
    return jsonify(held=_injector().held())


def release_holds() -> Response:
    body = parse_json_object(_body(), allow_empty=True)
    check_fields(body, required=(), optional=("op_id",))
    op_id = body.get("op_id")
    chosen = None if op_id is None else check_id("op_id", op_id)
    return jsonify(released=_injector().release(chosen))


# -- helpers ----------------------------------------------------------------------


def _body() -> bytes:
    """The request body; one over ``MAX_BODY_BYTES`` raises ``RequestEntityTooLarge`` (413).

    The server refuses such bodies before reading them; this is the app's own guard.
    """
    return request.get_data(cache=False)


def _injector() -> FaultInjector:
    faults = bank_state().faults
    assert faults is not None, "admin routes exist only when faults are enabled"
    return faults


def _fault(state: BankState, target: Target, stage: str) -> Outcome | None:
    if state.faults is None:
        return None
    return state.faults.before(target) if stage == "before" else state.faults.after(target)


def _after(state: BankState, target: Target, result: tuple[Response, int]) -> tuple[Response, int]:
    """The after-commit faults: hold, then answer normally, fail, or drop the connection."""
    outcome = _fault(state, target, "after")
    if outcome == "drop" and drop_client_connection(request.environ):
        log.info(
            "fault: dropped the connection after op %s", target.op_id, extra={"op_id": target.op_id}
        )
        return Response(status=204), 204
    if outcome is not None:
        return _injected()
    return result


def _injected() -> tuple[Response, int]:
    return _error(503, "injected_fault", "fault injection refused this request")


#: Methods that change something; a browser's cross-site POST needs no permission to be sent.
_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _refuse_other_sites() -> tuple[Response, int] | None:
    """Refuse what a web page could send through a browser: a foreign ``Host``, a non-JSON write.

    A page on another site may POST ``text/plain`` (or a form) to the bank
    without asking the browser's permission, and through DNS rebinding may
    reach it under a name of its own; it cannot send ``application/json``
    to another origin without a CORS preflight, which the bank never grants.
    """
    config = bank_state().config
    if request.path in _OPEN_PATHS:
        return None
    if not config.allowed_hosts.allows(request.headers.get("Host")):
        return _error(400, "unknown_host", "this bank does not answer to that Host (ALLOWED_HOSTS)")
    if request.method in _CHANGES and request.mimetype != "application/json":
        return _error(415, "unsupported_media_type", "send Content-Type: application/json")
    return None


def _require_token() -> tuple[Response, int] | None:
    """Every call but ``/health`` needs ``Authorization: Bearer <BANK_TOKEN>`` when one is set.

    Reads too: balances and entries are private, and the fault admin's reads
    tell an attacker which requests are being held.
    """
    token = bank_state().config.token
    if token is None or request.path in _OPEN_PATHS:
        return None
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return None
    return _error(401, "unauthorized", "this call needs Authorization: Bearer <BANK_TOKEN>")


def _ledger_error(exc: LedgerError) -> tuple[Response, int]:
    status = 409 if isinstance(exc, Conflict) else 422 if isinstance(exc, Rejected) else 400
    if isinstance(exc, Cancelled):
        return _error(status, exc.code, exc.message, cancelled=exc.cancellation.to_json())
    return _error(status, exc.code, exc.message)


def _error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error={"code": code, "message": message, **extra}), status


def _invalid_request(exc: InvalidRequest) -> tuple[Response, int]:
    return _error(400, "invalid_request", str(exc), field=exc.field)


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    if isinstance(exc, RequestEntityTooLarge):
        return _error(413, "body_too_large", f"body: larger than {MAX_BODY_BYTES} bytes")
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, f"http_{status}")
    response, _ = _error(status, code, exc.description or exc.name)
    if status == 405 and exc.get_headers():
        for key, value in exc.get_headers():
            if key.lower() == "allow":
                response.headers["Allow"] = value
    return response, status


def _start_clock() -> None:
    g.bank_request_started = time.perf_counter()


def _time_request(response: Response) -> Response:
    """Observe the request's duration under its route template (``unmatched`` for none)."""
    started: float | None = g.get("bank_request_started")
    if started is not None:
        rule = request.url_rule
        bank_state().metrics.request_took(
            rule.rule if rule is not None else None, request.method, time.perf_counter() - started
        )
    return response


#: The requests that write the ledger: a success among them shows the storage works.
_WRITES = frozenset({"PUT", "POST"})


def _note_write(response: Response) -> Response:
    if request.method in _WRITES and 200 <= response.status_code < 300:
        bank_state().storage.wrote()
    return response


def _unexpected_error(exc: Exception) -> tuple[Response, int]:
    if is_storage_error(exc):
        # The transaction was rolled back: nothing was written, nothing is acknowledged.
        bank_state().storage.failed(exc)
        log.error("ledger storage refused a write: %s", exc)
        return _error(
            503, "storage_unavailable", f"the ledger cannot be written now: {exc}", retryable=True
        )
    log.exception("unexpected error")
    return _error(500, "internal_error", f"{type(exc).__name__}; see the bank's log")
