"""``LOG_FORMAT=json``: one JSON object per line from every part; text, the default, as before.

The formatter alone (its keys, extras, tracebacks, spans), then real
processes: banks, the promise store, a worker and the console started as a
user starts them, whose every output line must parse.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from envsettings import SettingsError
from envsettings import logs as envlogs
from envsettings.logs import JsonFormatter, configure_logging, log_format
from orchestrator.local.supervisor import free_port, is_healthy
from orchestrator.local.system import SOURCE, STORE, TARGET, WORKERS, LocalSystem
from orchestrator.settings import Settings

REQUIRED = {"time", "level", "logger", "message", "pid"}
ISO_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
#: A line of the banks' text log (``%(asctime)s %(name)s %(levelname)s %(message)s``).
BANK_TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
)
TOKEN = "json-logs-token"
TRANSFER_ID = "json-logs-transfer-1"


# -- the formatter -------------------------------------------------------------------------


def json_logger(name: str = "test.json_logs") -> tuple[logging.Logger, io.StringIO]:
    """A logger of its own (not the root's handlers) writing JSON lines to a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.Logger(name, logging.DEBUG)
    logger.addHandler(handler)
    return logger, out


def only_line(out: io.StringIO) -> dict[str, Any]:
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    parsed = json.loads(lines[0])
    assert isinstance(parsed, dict)
    return parsed


def test_a_record_with_ids_and_an_exception_gives_those_fields_and_the_traceback() -> None:
    logger, out = json_logger()
    try:
        raise ValueError("boom\non two lines")
    except ValueError:
        logger.exception(
            "step %s failed", "debit", extra={"transfer_id": "t1", "op_id": "t1-debit"}
        )
    line = only_line(out)
    assert set(line) >= REQUIRED
    assert ISO_UTC_MS.fullmatch(line["time"]), line["time"]
    assert line["level"] == "ERROR"
    assert line["logger"] == "test.json_logs"
    assert line["message"] == "step debit failed"
    assert line["pid"] == os.getpid()
    assert line["transfer_id"] == "t1"
    assert line["op_id"] == "t1-debit"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("ValueError: boom\non two lines")
    assert "trace_id" not in line
    assert "span_id" not in line


def test_the_keys_come_in_a_fixed_order_and_nothing_else_without_extras() -> None:
    logger, out = json_logger()
    logger.warning("plain")
    assert list(only_line(out)) == ["time", "level", "logger", "message", "pid"]


def test_the_time_is_utc_with_milliseconds() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi", (), None)
    record.created = 1_700_000_000.5
    record.msecs = 500.0
    line = json.loads(JsonFormatter().format(record))
    assert line["time"] == "2023-11-14T22:13:20.500Z"


def test_extras_json_cannot_hold_are_written_as_text() -> None:
    logger, out = json_logger()

    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    logger.info(
        "odd extras", extra={"thing": Opaque(), "by_number": {1: "one"}, "nan": float("nan")}
    )
    line = only_line(out)
    assert line["message"] == "odd extras"
    assert line["thing"] == "opaque!"
    assert line["by_number"] == str({1: "one"})
    assert line["nan"] == "nan"


def test_an_extra_never_replaces_a_key_of_the_line_itself() -> None:
    logger, out = json_logger()
    logger.info("hello", extra={"pid": "not mine", "level": "LOUD", "exc": "none"})
    line = only_line(out)
    assert line["pid"] == os.getpid()
    assert line["level"] == "INFO"
    assert "exc" not in line


def test_a_message_whose_arguments_do_not_fit_still_gives_a_json_line() -> None:
    logger, out = json_logger()
    logger.info("%d cents", "many")
    line = only_line(out)
    assert "%d cents" in line["message"]
    assert "'many'" in line["message"]


def test_a_multiline_message_stays_on_one_line() -> None:
    logger, out = json_logger()
    logger.info("one\ntwo")
    assert only_line(out)["message"] == "one\ntwo"


def test_with_tracing_on_a_line_names_the_current_span(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import trace

    monkeypatch.setattr(envlogs, "tracing_on", lambda: True)
    context = trace.SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False)
    logger, out = json_logger()
    with trace.use_span(trace.NonRecordingSpan(context)):
        logger.info("inside", extra={"op_id": "t1-credit"})
    line = only_line(out)
    assert line["trace_id"] == f"{0xABC:032x}"
    assert line["span_id"] == f"{0xDEF:016x}"
    assert line["op_id"] == "t1-credit"

    logger, out = json_logger()
    logger.info("outside any span")
    assert "trace_id" not in only_line(out)


def test_with_tracing_off_no_span_is_named_even_inside_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import trace

    monkeypatch.setattr(envlogs, "tracing_on", lambda: False)
    context = trace.SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False)
    logger, out = json_logger()
    with trace.use_span(trace.NonRecordingSpan(context)):
        logger.info("inside")
    line = only_line(out)
    assert "trace_id" not in line
    assert "span_id" not in line


def test_with_tracing_off_nothing_of_opentelemetry_is_imported() -> None:
    script = (
        "import logging, sys\n"
        "from envsettings.logs import JsonFormatter\n"
        "record = logging.LogRecord('x', logging.INFO, 'f', 1, 'hi', (), None)\n"
        "print(JsonFormatter().format(record))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    line, imported = result.stdout.splitlines()
    assert json.loads(line)["message"] == "hi"
    assert imported == "[]"


@pytest.mark.parametrize(
    ("value", "chosen"),
    [
        (None, "text"),
        ("", "text"),
        ("  ", "text"),
        ("text", "text"),
        ("json", "json"),
        ("JSON", "json"),
    ],
)
def test_log_format_reads_text_or_json(value: str | None, chosen: str) -> None:
    env = {} if value is None else {"LOG_FORMAT": value}
    assert log_format(env) == chosen


@pytest.mark.parametrize("value", ["yaml", "jsonl", "1"])
def test_any_other_log_format_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^LOG_FORMAT .*{value!r}") as refused:
        configure_logging(logging.INFO, "%(message)s", env={"LOG_FORMAT": value})
    assert refused.value.variable == "LOG_FORMAT"


def run_python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_configured_text_is_what_basic_config_gave() -> None:
    script = (
        "import logging\n"
        "from envsettings.logs import configure_logging\n"
        "configure_logging(logging.INFO, '%(levelname)s|%(name)s|%(message)s')\n"
        "logging.getLogger('a.b').info('hello %s', 'there')\n"
        "logging.getLogger('a.b').debug('hidden')\n"
    )
    result = run_python(script, {"LOG_FORMAT": ""})
    assert result.stderr == "INFO|a.b|hello there\n"


def test_configured_json_turns_warnings_and_uncaught_exceptions_into_lines() -> None:
    script = (
        "import logging, threading, warnings\n"
        "from envsettings.logs import configure_logging\n"
        "configure_logging(logging.INFO, '%(message)s')\n"
        "logging.getLogger('a.b').debug('hidden')\n"
        "warnings.warn('careful', UserWarning, stacklevel=1)\n"
        "thread = threading.Thread(target=lambda: 1 / 0, name='helper')\n"
        "thread.start(); thread.join()\n"
        "raise RuntimeError('the end')\n"
    )
    result = run_python(script, {"LOG_FORMAT": "json"})
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["logger"] for line in lines] == ["py.warnings", "uncaught", "uncaught"]
    assert "careful" in lines[0]["message"]
    assert "helper" in lines[1]["message"]
    assert lines[1]["exc"].endswith("ZeroDivisionError: division by zero")
    assert lines[2]["level"] == "CRITICAL"
    assert lines[2]["exc"].endswith("RuntimeError: the end")


# -- real processes --------------------------------------------------------------------------


@dataclass
class Run:
    """What a whole local system wrote, once stopped."""

    logs: dict[str, Path]
    pids: dict[str, int]
    console_output: str
    console_address: str


def crossbank(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Source bank, store and a worker on JSON, the target bank on text (``LOG_FORMAT``
    blank); a transfer, bad requests and a console on JSON; then everything stopped."""
    root = tmp_path_factory.mktemp("json-logs")
    as_json = {"LOG_FORMAT": "json"}
    system = LocalSystem(
        root,
        Settings(bank_token=TOKEN),
        run=(SOURCE, TARGET, STORE),
        workers=1,
        env={
            SOURCE: as_json,
            TARGET: {"LOG_FORMAT": ""},
            STORE: as_json,
            WORKERS: {**as_json, "LOG_LEVEL": "INFO"},
        },
    )
    with system:
        env = {**os.environ, **system.child_env}
        seeded = crossbank(env, "accounts", "seed")
        assert seeded.returncode == 0, seeded.stderr
        moved = crossbank(
            env, "transfer", "--from", "alice", "--to", "carol", "--amount", "1.00",
            "--id", TRANSFER_ID,
        )  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        bank = system.settings.source_bank_url
        refused = requests.post(
            f"{bank}/entries",
            data=b"{not json",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert refused.status_code == 400
        store = system.settings.resonate_url
        assert store is not None
        refused = requests.post(
            f"{store}/",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert refused.status_code in (400, 401)
        console_output, address = run_console(env)
        pids = {name: process.pid for name, process in system.processes.items()}
        logs = {name: process.log_path for name, process in system.processes.items()}
    assert all(path is not None for path in logs.values())
    return Run(
        logs={name: path for name, path in logs.items() if path is not None},
        pids=pids,
        console_output=console_output,
        console_address=address,
    )


def run_console(env: dict[str, str]) -> tuple[str, str]:
    """``crossbank console`` on JSON until it answers, then SIGTERM: its output, its address."""
    port = free_port()
    console = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "console", "--port", str(port)],
        env={**env, "LOG_FORMAT": "json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert console.stdout is not None
        first = console.stdout.readline()
        assert is_healthy(f"http://127.0.0.1:{port}/health"), first
        console.send_signal(signal.SIGTERM)
        rest, _ = console.communicate(timeout=60)
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
    assert console.returncode == 0, first + rest
    return first + rest, f"http://127.0.0.1:{port}"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object with the keys every line has."""
    lines = text.splitlines()
    assert lines, "no output at all"
    parsed = []
    for line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\nin:\n{text}")
        assert isinstance(value, dict), line
        assert set(value) >= REQUIRED, line
        assert ISO_UTC_MS.fullmatch(value["time"]), line
        assert value["level"] in LEVELS, line
        assert isinstance(value["message"], str), line
        parsed.append(value)
    return parsed


def messages(lines: list[dict[str, Any]]) -> str:
    return "\n".join(line["message"] for line in lines)


@pytest.mark.parametrize(
    ("part", "said"),
    [
        (SOURCE, [r"^source bank serving on http://", r"^source bank stopping on SIGTERM$"]),
        (
            STORE,
            [r"recovered snapshot@", r"^serving .* on http://", "listener connected", "^stopping$"],
        ),
        ("worker-1", ["SSE connection established", TRANSFER_ID, r"worker \d+ stopped"]),
    ],
)
def test_every_line_of_a_part_on_json_is_a_json_object(
    run: Run, part: str, said: list[str]
) -> None:
    lines = json_lines(run.logs[part].read_text())
    assert {line["pid"] for line in lines} == {run.pids[part]}
    text = messages(lines)
    for pattern in said:
        assert re.search(pattern, text, re.MULTILINE), f"{pattern!r} not in:\n{text}"


def test_a_workers_lines_inside_a_step_name_its_transfer_and_op(run: Run) -> None:
    lines = json_lines(run.logs["worker-1"].read_text())
    started = [
        line for line in lines if line["message"].startswith(f"transfer {TRANSFER_ID} started")
    ]
    assert len(started) == 1, messages(lines)
    assert started[0]["transfer_id"] == TRANSFER_ID
    assert started[0]["op_id"] == f"{TRANSFER_ID}-debit"
    finished = [line for line in lines if f"{TRANSFER_ID} finished" in line["message"]]
    assert finished, messages(lines)
    assert finished[0]["op_id"] == f"{TRANSFER_ID}-credit"  # decided by the credit


def test_a_part_on_text_logs_as_it_always_did(run: Run) -> None:
    lines = run.logs[TARGET].read_text().splitlines()
    assert lines
    for line in lines:
        assert BANK_TEXT_LINE.match(line), line
    assert re.match(BANK_TEXT_LINE.pattern + "target bank serving on http://", lines[0])
    assert lines[0].split(" ", 3)[2:3] == ["bank"]


def test_the_console_on_json_says_where_it_listens_in_a_json_line(run: Run) -> None:
    lines = json_lines(run.console_output)
    assert lines[0]["logger"] == "orchestrator.console"
    assert lines[0]["address"] == run.console_address
    assert lines[0]["message"].startswith(f"console: {run.console_address}")


@pytest.mark.parametrize(
    "command",
    [
        ["source_bank"],
        ["target_bank"],
        ["promise_store"],
        ["orchestrator", "worker"],
        ["orchestrator", "console"],
    ],
)
def test_a_part_refuses_an_unknown_log_format_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "LOG_FORMAT": "yaml",
        "PORT": "0",
        "LEDGER_PATH": str(tmp_path / "ledger.db"),
        "STORE_PATH": str(tmp_path / "promises.db"),
    }
    result = subprocess.run(
        [sys.executable, "-m", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "LOG_FORMAT" in lines[0]
    assert "'yaml'" in lines[0]
    assert not (tmp_path / "ledger.db").exists()
    assert not (tmp_path / "promises.db").exists()


def test_a_bank_that_cannot_listen_says_why_in_one_json_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            **os.environ,
            "LOG_FORMAT": "json",
            "PORT": str(taken.getsockname()[1]),
            "LEDGER_PATH": str(tmp_path / "ledger.db"),
        }
        result = subprocess.run(
            [sys.executable, "-m", "source_bank"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    lines = json_lines(result.stdout + result.stderr)
    assert lines[-1]["level"] == "CRITICAL"
    assert lines[-1]["exc"].startswith("Traceback (most recent call last):")
    assert "OSError" in lines[-1]["exc"]
