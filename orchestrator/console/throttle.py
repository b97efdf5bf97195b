"""How many wrong tokens ``/api/login`` hears before it stops listening for a while.

A console's token is long and random, so guessing it is hopeless; the
throttle is there so that nobody can try, and so that a page hammering the
login costs the console nothing. Each client address gets
:data:`ATTEMPTS` wrong guesses per :data:`WINDOW_SECONDS`, and all clients
together :data:`ALL_ATTEMPTS`; past either, ``/api/login`` answers 429 with
``Retry-After`` until the oldest failure leaves the window. A right token is
always taken when the throttle allows the attempt at all, and clears that
address's count. Memory is bounded: at most :data:`MAX_ADDRESSES` addresses
are remembered, the least recent forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

#: Wrong tokens one address may send per window.
ATTEMPTS = 5
#: Wrong tokens all addresses together may send per window.
ALL_ATTEMPTS = 50
WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000


class LoginThrottle:
    """Failed logins per address and in all, over a sliding window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_address: OrderedDict[str, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()

    def wait(self, address: str) -> float:
        """Seconds ``address`` must wait before its next attempt is heard; 0 when it may try now."""
        now = self._clock()
        waits = [0.0]
        failures = self._by_address.get(address)
        for seen, limit in ((failures, ATTEMPTS), (self._all, ALL_ATTEMPTS)):
            if seen is None:
                continue
            _forget_before(seen, now - WINDOW_SECONDS)
            if len(seen) >= limit:
                waits.append(seen[0] + WINDOW_SECONDS - now)
        return max(waits)

    def failed(self, address: str) -> None:
        now = self._clock()
        failures = self._by_address.pop(address, None) or deque()
        failures.append(now)
        self._by_address[address] = failures  # now the most recent
        while len(self._by_address) > MAX_ADDRESSES:
            self._by_address.popitem(last=False)
        self._all.append(now)

    def succeeded(self, address: str) -> None:
        self._by_address.pop(address, None)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


def _forget_before(times: deque[float], cutoff: float) -> None:
    while times and times[0] <= cutoff:
        times.popleft()
