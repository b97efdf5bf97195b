"""Remember every ledger entry the banks list while the campaign runs.

A bank that listed an entry had committed it. If a later kill -9 lost it, the
final ledger would not have it: :func:`chaos.checks.check_seen_entries` looks.
Reads go page by page from the last sequence number seen, so a long campaign
does not re-read the whole ledger each round; a bank that is down or paused
is simply asked again next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

#: Entries per page, seconds between rounds, and how long one page may take
#: (a paused bank must not stall the round for the other one).
_PAGE = 500
_INTERVAL_S = 1.0
_TIMEOUT_S = 2.0


class LedgerWatcher:
    def __init__(self, banks: dict[str, str], *, token: str) -> None:
        """``banks``: bank name ("source", "target") -> base URL."""
        self.banks = banks
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}
        self.rounds = 0
        self._after: dict[str, int | None] = dict.fromkeys(banks)
        self._headers = {"Authorization": f"Bearer {token}"}
        self._http: aiohttp.ClientSession | None = None
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.read_once()
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), _INTERVAL_S)

    def stop(self) -> None:
        self._stop.set()

    async def read_once(self) -> None:
        for name, url in self.banks.items():
            try:
                await self._read_new(name, url)
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                continue  # down or paused: next round

    async def _read_new(self, name: str, url: str) -> None:
        while True:
            params = {"limit": str(_PAGE)}
            if self._after[name] is not None:
                params["after"] = str(self._after[name])
            async with self._session().get(f"{url}/entries", params=params) as response:
                response.raise_for_status()
                page = await response.json()
            for entry in page["entries"]:
                self.seen[(name, entry["op_id"])] = entry
                self._after[name] = entry["seq"]
            if page.get("next_after") is None or not page["entries"]:
                return

    def _session(self) -> aiohttp.ClientSession:
        """Made on first use, inside the running loop that will use it."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers=self._headers, timeout=aiohttp.ClientTimeout(total=_TIMEOUT_S)
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
