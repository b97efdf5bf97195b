"""A private Prometheus scraping a local crossbank, as a child process of the tests.

The server is Debian's ``prometheus`` package (``PROMETHEUS_BIN`` names
another binary). It listens on 127.0.0.1 only, keeps its data in a scratch
directory removed on :meth:`PrivatePrometheus.stop`, and scrapes every
target each second, so a test sees a change within a couple of seconds.
Nothing is installed as a service and nothing outlives ``stop``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Seconds between two scrapes of each target (and between rule evaluations).
SCRAPE_SECONDS = 1
#: Seconds Prometheus may take to answer ready, and a query to answer.
START_TIMEOUT = 30.0
QUERY_TIMEOUT = 10.0


class PrometheusUnavailable(RuntimeError):
    """No Prometheus binary on this machine; the message says where it was looked for."""


@dataclass(frozen=True)
class ScrapeJob:
    """One job: ``targets`` (``host:port``) scraped at ``/metrics``, with ``token`` as bearer."""

    name: str
    targets: tuple[str, ...]
    token: str | None = None


def prometheus_binary() -> str:
    """``PROMETHEUS_BIN``, else ``prometheus`` on the PATH (Debian: ``apt-get install prometheus``)."""
    chosen = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if not chosen or not Path(chosen).exists():
        raise PrometheusUnavailable(
            "no prometheus binary: install Debian's prometheus package or set PROMETHEUS_BIN"
        )
    return chosen


class PrivatePrometheus:
    """``start(jobs)``, ``query(expr)``, ``stop()``; its log at ``log_path``."""

    def __init__(self, port: int, *, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, jobs: list[ScrapeJob]) -> None:
        binary = prometheus_binary()
        self._dir = Path(tempfile.mkdtemp(prefix="crossbank-prometheus-"))
        config = self._dir / "prometheus.yml"
        # JSON is YAML: no YAML writer needed for a file only this class reads back.
        config.write_text(json.dumps(_config(jobs)))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self._dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with code {self._process.returncode} (see {self.log_path})"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus was not ready within {START_TIMEOUT:g}s")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query: ``[{"metric": {labels}, "value": [at, "text"]}]``."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT) as answer:
            body = json.load(answer)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus refused {expr!r}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The one number ``expr`` gives, or None when it gives none (no series yet)."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) != 1:
            raise RuntimeError(f"{expr!r} gave {len(result)} series, not one")
        return float(result[0]["value"][1])

    def targets_up(self) -> dict[str, bool]:
        """Each scraped target (``job/host:port``) and whether its last scrape worked."""
        return {
            f"{r['metric']['job']}/{r['metric']['instance']}": r["value"][1] == "1"
            for r in self.query("up")
        }

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PrivatePrometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _config(jobs: list[ScrapeJob]) -> dict[str, Any]:
    interval = f"{SCRAPE_SECONDS}s"
    scrape_configs = []
    for job in jobs:
        entry: dict[str, Any] = {
            "job_name": job.name,
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "static_configs": [{"targets": list(job.targets)}],
        }
        if job.token is not None:
            entry["authorization"] = {"type": "Bearer", "credentials": job.token}
        scrape_configs.append(entry)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": scrape_configs,
    }
