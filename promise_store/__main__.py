"""``python -m promise_store``: serve the Resonate protocol over a journaled SQLite file."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

from envsettings import SettingsError
from envsettings.logs import configure_logging
from promise_store.config import ConfigError, Settings
from promise_store.errors import StoreError
from promise_store.server import serve
from promise_store.state import JournaledState

logger = logging.getLogger("promise_store")
#: The store's log lines with ``LOG_FORMAT`` text (the default).
TEXT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main() -> int:
    try:
        configure_logging(logging.INFO, TEXT_LOG_FORMAT)
    except SettingsError as exc:  # no log to say it in: one line on stderr
        print(f"promise_store: {exc}", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
        store = JournaledState(
            settings.store_path,
            snapshot_every=settings.snapshot_every,
            commit_in_thread=settings.commit_in_thread,
            write_retry_interval=settings.write_retry_interval,
        )
    except (ConfigError, StoreError) as exc:
        logger.error("%s", exc)
        return 2
    # What recovery loaded lives as long as the process and holds no cycles:
    # keep the cyclic collector from walking it again at every full collection.
    gc.freeze()
    logger.info(
        "serving %s on %s://%s:%d (auth %s)",
        settings.store_path,
        settings.scheme,
        settings.host,
        settings.port,
        "on" if settings.token else "off",
    )
    asyncio.run(serve(store, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
