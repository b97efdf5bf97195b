"""Run one bank with waitress: ``python -m source_bank`` ends up here.

SIGTERM and SIGINT stop it gracefully: parked (held) requests are released,
in-flight requests finish, then the ledger closes. Nothing depends on that for
safety (every acknowledged write is already committed), it just avoids
answering clients with dropped connections on an ordinary stop.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from types import FrameType
from typing import Any

from waitress import wasyncore

from bank.app import bank_state, create_app
from bank.config import BankConfig
from bank.fd_limit import fit_connection_cap
from bank.guarded_server import ConnectionLimits, GuardedServer
from bank.validation import MAX_BODY_BYTES
from envsettings import SettingsError
from envsettings.logs import configure_logging
from envsettings.tls import server_context

log = logging.getLogger("bank")
#: The banks' log lines with ``LOG_FORMAT`` text (the default).
TEXT_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

#: On SIGTERM, how long in-flight requests get to finish before the process exits.
DRAIN_SECONDS = 10.0
#: Longest wait for socket events in one turn of the server loop: how soon a stop is seen.
LOOP_SECONDS = 0.2


def main(bank_name: str, default_port: int) -> None:
    try:
        configure_logging(logging.INFO, TEXT_LOG_FORMAT)
        config = BankConfig.from_env(bank_name, default_port)
    except SettingsError as exc:
        print(f"{bank_name}_bank: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc

    app = create_app(config)
    state = bank_state(app)
    server = GuardedServer(
        app,
        connection_limits(config),
        tls=server_context(config.tls) if config.tls is not None else None,
        host=config.host,
        port=config.port,
        threads=config.threads,
        ident=f"crossbank-{bank_name}",
    )

    # The handler only records the signal: an exception raised from it would
    # land inside whichever connection's handler was running, and waitress
    # catches those (it logs and closes that connection), so the stop was lost.
    stop_signals: list[str] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stop_signals.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    faults = "on" if config.faults_enabled else "off"
    auth = "on" if config.token else "off"
    log.info(
        "%s bank serving on %s://%s:%s (ledger %s, auth %s, faults %s, at most %d connections)",
        bank_name,
        config.scheme,
        config.host,
        server.effective_port,
        config.ledger_path,
        auth,
        faults,
        server.limits.max_connections,
    )
    try:
        while not stop_signals:
            wasyncore.loop(timeout=LOOP_SECONDS, map=server._map, use_poll=True, count=1)
        log.info("%s bank stopping on %s", bank_name, stop_signals[0])
        if state.faults is not None:
            state.faults.close()
        _drain(server, DRAIN_SECONDS)
    finally:
        if state.faults is not None:
            state.faults.close()
        server.task_dispatcher.shutdown()
        server.close()
        state.ledger.close()


def connection_limits(config: BankConfig) -> ConnectionLimits:
    """The config's limits, with the connection cap fitted under the open-file limit."""
    return ConnectionLimits(
        max_connections=fit_connection_cap(config.max_connections, config.threads),
        idle_timeout=config.idle_timeout,
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        max_header_bytes=config.max_header_bytes,
        max_body_bytes=MAX_BODY_BYTES,
    )


def _drain(server: Any, seconds: float) -> None:
    """Stop accepting, then keep serving until in-flight requests have been answered."""
    server.accepting = False
    dispatcher = server.task_dispatcher
    deadline = time.monotonic() + seconds

    def busy() -> bool:
        with dispatcher.lock:
            if dispatcher.active_count or dispatcher.queue:
                return True
        return any(
            getattr(channel, "total_outbufs_len", 0) for channel in list(server._map.values())
        )

    while busy() and time.monotonic() < deadline:
        wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)
