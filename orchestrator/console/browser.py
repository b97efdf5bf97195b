"""A headless Chromium driven by selenium, for the console's browser test, its screenshot and its figures.

Uses the system's ``chromium`` and ``chromedriver`` (Debian's packages, found
on ``PATH`` or named by ``CHROMIUM`` and ``CHROMEDRIVER``); nothing downloads
a browser. selenium is a development dependency: nothing a deployment runs
imports this module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

#: A laptop screen, and a phone's width.
DESKTOP = (1280, 800)
PHONE = (390, 844)


class NoBrowser(RuntimeError):
    """No Chromium or no chromedriver on this machine."""


def browser_paths() -> tuple[str, str]:
    """``(chromium, chromedriver)``: from ``CHROMIUM``/``CHROMEDRIVER`` or ``PATH``."""
    chromium = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        raise NoBrowser(
            "the console's browser needs Chromium and chromedriver (Debian: apt-get install "
            "chromium chromium-driver), or CHROMIUM and CHROMEDRIVER naming them"
        )
    return chromium, driver


@contextlib.contextmanager
def chromium(size: tuple[int, int] = DESKTOP) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a window of ``size``, in a profile of its own, quit on the way out."""
    binary, driver = browser_paths()
    with tempfile.TemporaryDirectory(prefix="crossbank-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for argument in (
            "--headless=new",
            "--no-sandbox",  # root in CI containers has no user namespace to sandbox in
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
        ):
            options.add_argument(argument)
        browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        try:
            _fit_viewport(browser, size)
            yield browser
        finally:
            browser.quit()


def _fit_viewport(browser: webdriver.Chrome, size: tuple[int, int]) -> None:
    """Make the page itself ``size`` (the window is larger by the browser's own frame)."""
    browser.set_window_size(*size)
    inner = browser.execute_script("return [window.innerWidth, window.innerHeight]")
    width, height = size
    browser.set_window_size(width + width - int(inner[0]), height + height - int(inner[1]))


def wait_for[T](
    check: Callable[[], T | None],
    *,
    within: float = 20.0,
    what: str = "the page",
    every: float = 0.05,
) -> T:
    """Return ``check()``'s first truthy answer; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # the element is being replaced: look again
            last = exc
            value = None
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {within:g}s" + (f" ({last})" if last else ""))
