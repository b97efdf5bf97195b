"""``python -m orchestrator.console.measure``: the console's load time and update latency, in a browser.

Starts a local crossbank with its console (as ``crossbank demo`` does) and
Debian's headless Chromium, then measures, in the browser:

- load: from navigation start to the first state on screen (the page's own
  ``firstRenderAt``), and to ``DOMContentLoaded``, over ``--loads`` fresh loads;
- update latency, event to screen: a bank answers a write (a new account with
  an opening balance) at time T; the page's MutationObserver notes when that
  account's row appears; latency is the difference (one machine, one clock).
  The feed's own stamp splits it into the wait for the next poll (poll
  interval ``CONSOLE_POLL_INTERVAL``) and push plus render;
- a transfer's commit to screen: the store's settle time of the transfer's
  root promise to its row showing ``committed``.

Prints the figures (median, p95, max in ms); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from selenium.webdriver import Chrome

from orchestrator.cli import commands
from orchestrator.console.browser import DESKTOP, chromium, wait_for
from orchestrator.console.config import ConsoleSettings
from orchestrator.console.local import LocalControl
from orchestrator.console.running import ConsoleThread
from orchestrator.local.stage import demo_settings
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import BACKENDS, SOURCE, STORE_BACKEND, LocalSystem

#: Notes, in wall-clock ms, when a selector first matches (set up once per page).
WATCHER = """
window.__seen = window.__seen || {};
window.__watching = window.__watching || [];
if (!window.__observer) {
  const check = () => {
    const now = performance.timeOrigin + performance.now();
    for (const selector of window.__watching) {
      if (!(selector in window.__seen) && document.querySelector(selector)) window.__seen[selector] = now;
    }
  };
  window.__observer = new MutationObserver(check);
  window.__observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}
window.__watching.push(arguments[0]);
"""


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{name:<44} median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   "
        f"max {ordered[-1]:7.1f} ms   (n={len(ordered)})"
    )


def measure(backend: str, loads: int, updates: int, poll_interval: float) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="crossbank-console-measure-") as scratch:
        system = LocalSystem(Path(scratch), demo_settings(3.0), faults=True, backend=backend)
        with system:
            asyncio.run(commands.seed_command(system.settings))
            settings = ConsoleSettings(port=free_port(), poll_interval=poll_interval)
            with ConsoleThread(system.settings, settings, LocalControl(system)) as console:
                assert console.address is not None
                return _in_browser(system, console.address, loads, updates, poll_interval)


def _in_browser(
    system: LocalSystem, address: str, loads: int, updates: int, poll_interval: float
) -> list[str]:
    first_state, dom_ready = [], []
    with chromium(DESKTOP) as browser:
        for _ in range(loads):
            browser.get(address)
            wait_for(lambda: browser.execute_script("return window.crossbankConsole.firstRenderAt"))
            first_state.append(
                float(browser.execute_script("return window.crossbankConsole.firstRenderAt"))
            )
            dom_ready.append(
                float(
                    browser.execute_script(
                        "return performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
                    )
                )
            )
        to_screen, to_push, push_to_screen = [], [], []
        for n in range(updates):
            account = f"latency-{n}"
            selector = f'#bank-source tr[data-account="{account}"]'
            browser.execute_script(WATCHER, selector)
            time.sleep(poll_interval * (n % 5) / 5)  # writes land anywhere in the poll cycle
            answered = asyncio.run(_open_account(system, account))
            seen = _seen(browser, selector, f"{account} on screen")
            renders = browser.execute_script("return window.crossbankConsole.renders")
            # The render that showed it: the page notes it as it renders, the observer just after.
            render = max(
                (r for r in renders if r["renderedAt"] <= seen + 1), key=lambda r: r["renderedAt"]
            )
            to_screen.append(float(seen) - answered)
            to_push.append(float(render["sentAt"]) - answered)
            push_to_screen.append(float(seen) - float(render["sentAt"]))
        commits = []
        for n in range(max(3, updates // 4)):
            transfer_id = f"latency-transfer-{n}-{int(time.time())}"
            selector = f'tr[data-transfer="{transfer_id}"][data-status="committed"]'
            browser.execute_script(WATCHER, selector)
            settled = asyncio.run(_transfer(system, transfer_id))
            seen = _seen(browser, selector, f"{transfer_id} committed on screen")
            commits.append(float(seen) - settled)
    return [
        summary("load: navigation to first state on screen", first_state),
        summary("load: navigation to DOMContentLoaded", dom_ready),
        summary("update: bank write answered to screen", to_screen),
        summary("  of which: until the next poll pushed it", to_push),
        summary("  of which: push to screen", push_to_screen),
        summary("transfer: root promise settled to screen", commits),
    ]


def _seen(browser: Chrome, selector: str, what: str) -> float:
    """When (wall-clock ms) ``selector`` first matched on the page."""

    def noted() -> float | None:
        value = browser.execute_script("return window.__seen[arguments[0]]", selector)
        return float(value) if value else None

    return wait_for(noted, what=what)


async def _open_account(system: LocalSystem, account: str) -> float:
    """Open an account on the source bank; the wall-clock ms when the bank answered."""
    async with system.bank(SOURCE) as bank:
        await bank.put_account(account, "open", 100)
    return time.time() * 1000


async def _transfer(system: LocalSystem, transfer_id: str) -> float:
    """Run a transfer to its end; the store's settle time of its root promise (ms)."""
    await commands.transfer_command(
        system.settings,
        source="alice",
        target="carol",
        amount="0.01",
        transfer_id=transfer_id,
        wait=True,
    )
    async with system.session() as resonate:
        root = await resonate.promises.get(transfer_id)
    return float(root.settled_at or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.console.measure", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", choices=BACKENDS, default=STORE_BACKEND)
    parser.add_argument("--loads", type=int, default=5, help="fresh page loads (default 5)")
    parser.add_argument("--updates", type=int, default=20, help="bank writes to watch (default 20)")
    parser.add_argument(
        "--poll-interval", type=float, default=0.5, help="CONSOLE_POLL_INTERVAL (default 0.5 s)"
    )
    args = parser.parse_args(argv)
    print(
        f"console on {args.backend}, CONSOLE_POLL_INTERVAL={args.poll_interval:g}s, "
        f"headless Chromium at {DESKTOP[0]}x{DESKTOP[1]}",
        flush=True,
    )
    for line in measure(args.backend, args.loads, args.updates, args.poll_interval):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
