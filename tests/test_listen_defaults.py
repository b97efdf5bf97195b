"""Safe by default: a part started with no ``HOST`` listens on loopback only.

Each part runs as a real process; the kernel's own table of listening sockets
(``/proc/net/tcp``) says which address it bound, whatever the part logs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.local.supervisor import free_port

LISTEN = "0A"
LOOPBACK = "0100007F"  # 127.0.0.1, as /proc/net/tcp writes it


def listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as the kernel writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == LISTEN and int(hex_port, 16) == port:
                    found.add(address)
    return found


@pytest.mark.parametrize("part", ["source_bank", "target_bank", "promise_store"])
def test_a_part_with_no_host_listens_on_loopback_only(part: str, tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("HOST", "BANK_TOKEN")}
    env.update(
        PORT=str(port),
        LEDGER_PATH=str(tmp_path / "ledger.db"),
        STORE_PATH=str(tmp_path / "promises.db"),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", part], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not (addresses := listening_addresses(port)):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, f"{part} never listened on {port}"
            time.sleep(0.05)
        assert addresses == {LOOPBACK}
    finally:
        process.terminate()
        process.wait(timeout=15)
