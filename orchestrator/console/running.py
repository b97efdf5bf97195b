"""Run a console: in the foreground (``crossbank console``) or beside the demo, in a thread.

The demo's scenes run on the main thread's event loop; the console gets a
thread and a loop of its own, so a scene that waits (a held credit, a worker
starting) never stalls the page, and the page never stalls a scene.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable

from orchestrator.console.config import ConsoleSettings
from orchestrator.console.local import LocalControl
from orchestrator.console.server import Console, Listening
from orchestrator.settings import Settings

#: Seconds a console may take to listen, or to stop.
START_TIMEOUT = 30.0


def serve(
    settings: Settings, console: ConsoleSettings, *, announce: Callable[[Listening], None]
) -> None:
    """Serve until SIGTERM (``docker stop``) or Ctrl-C."""
    server = Console(settings, console)

    async def main() -> None:
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await server.run(stop, ready=announce)

    asyncio.run(main())


class ConsoleThread:
    """A console on its own thread and event loop; ``start()`` returns its address."""

    def __init__(
        self, settings: Settings, console: ConsoleSettings, local: LocalControl | None = None
    ) -> None:
        self.settings = settings
        self.console = console
        self.local = local
        self.address: str | None = None
        #: A one-time link that logs a browser in (None when the console needs no token).
        self.login_link: str | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="crossbank-console", daemon=True)

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError(f"the console did not listen within {START_TIMEOUT:.0f}s")
        if self._error is not None:
            raise self._error
        assert self.address is not None
        return self.address

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server = Console(self.settings, self.console, self.local)
            await server.run(self._stop, ready=self._listening)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def _listening(self, listening: Listening) -> None:
        self.address, self.login_link = listening.address, listening.login_link
        self._ready.set()

    def __enter__(self) -> ConsoleThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
