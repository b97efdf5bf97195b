"""A local OTLP/HTTP endpoint that takes spans and drops them: where a benchmark sends its traces.

It answers every ``POST`` 200 and counts requests and bytes, without
decoding them: the benchmark measures what exporting costs the system, not
what a collector does with it. Runs in a thread of the benchmark's process,
whose CPU the harness counts with the machine's.
"""

from __future__ import annotations

import gzip
import http.server
import threading
from typing import Any, Self

from orchestrator.local.supervisor import free_port


class OtlpSink(http.server.ThreadingHTTPServer):
    """``with OtlpSink() as sink:`` then point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at ``sink.url``."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(("127.0.0.1", port or free_port()), _Handler)
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def took(self, body: bytes) -> None:
        """One export arrived (``body``: an ``ExportTraceServiceRequest``, not decoded here)."""
        with self._lock:
            self.requests += 1
            self.bytes += len(body)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: OtlpSink
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.took(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return
