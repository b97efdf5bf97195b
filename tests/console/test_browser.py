"""The console in a real browser (Debian's headless Chromium): what a person sees and does on the page.

One local system and one browser for the module. The page starts a transfer
and sees it commit; holds a credit, SIGKILLs the worker running the transfer
and starts a new one, all from the page, and sees the transfer finish with
each op applied once and the totals equal; its live charts count what its
table lists and show the held credit as money in flight; shows a bank that
is down as down, on the charts too.
``CONSOLE_SCREENSHOT=docs/console.png`` makes the crash test save the page as
it ends (the README's screenshot).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

from orchestrator.console.browser import DESKTOP, PHONE, chromium, wait_for
from orchestrator.console.config import ConsoleSettings
from orchestrator.console.running import ConsoleThread
from orchestrator.local.supervisor import free_port
from orchestrator.local.system import STORE, TARGET
from tests.console.conftest import LocalConsole, local_console, page_of


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConsole]:
    with local_console(tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(played: LocalConsole) -> Iterator[Chrome]:
    with page_of(played) as driver:
        yield driver


def text(browser: Chrome, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def row_status(browser: Chrome, transfer_id: str) -> str | None:
    rows = browser.find_elements(By.CSS_SELECTOR, f'tr[data-transfer="{transfer_id}"]')
    return rows[0].get_attribute("data-status") if rows else None


def start_from_page(
    browser: Chrome, source: str, target: str, amount: str, transfer_id: str
) -> None:
    for field, value in (
        ("from", source),
        ("to", target),
        ("amount", amount),
        ("tid", transfer_id),
    ):
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    assert text(browser, "#start-cli") == (
        f"crossbank transfer --from {source} --to {target} --amount {amount} --id {transfer_id}"
    )
    browser.find_element(By.CSS_SELECTOR, "#start-form button[type=submit]").send_keys(Keys.ENTER)


def balance(browser: Chrome, bank: str, account: str) -> str:
    return text(browser, f'#bank-{bank} tr[data-account="{account}"] td.num')


def shown(browser: Chrome, element_id: str) -> WebElement | None:
    element = browser.find_element(By.ID, element_id)
    return element if element.is_displayed() else None


def enabled(browser: Chrome, element_id: str) -> WebElement | None:
    element = browser.find_element(By.ID, element_id)
    return element if element.is_enabled() else None


def click(browser: Chrome, element_id: str) -> WebElement:
    element = wait_for(lambda: enabled(browser, element_id), what=f"#{element_id} enabled")
    element.click()
    return element


def test_the_page_starts_a_transfer_and_sees_it_commit(
    played: LocalConsole, browser: Chrome
) -> None:
    assert text(browser, "#total") == "1,310.00"
    assert text(browser, "#opening-total") == "1,310.00"
    assert balance(browser, "source", "alice") == "1,000.00"

    start_from_page(browser, "alice", "carol", "12.50", "page-commit-1")

    wait_for(
        lambda: row_status(browser, "page-commit-1") == "committed", what="the transfer committing"
    )
    wait_for(lambda: balance(browser, "source", "alice") == "987.50", what="alice's new balance")
    assert balance(browser, "target", "carol") == "12.50"
    assert text(browser, "#total") == "1,310.00"
    # Its timeline opened by itself, as `crossbank status` has it.
    wait_for(lambda: "done: committed" in text(browser, "#detail"), what="the timeline")
    assert "page-commit-1:1 debit: applied" in text(browser, "#detail")
    assert "crossbank status page-commit-1" in text(browser, "#detail")


def test_a_refused_transfer_says_why_as_the_cli_does(played: LocalConsole, browser: Chrome) -> None:
    start_from_page(browser, "alice", "carol", "1e3", "page-refused-1")
    wait_for(lambda: "exponents are not accepted" in text(browser, "#message"), what="the refusal")
    assert "error" in (browser.find_element(By.ID, "message").get_attribute("class") or "")
    start_from_page(browser, "alice", "zed", "1.00", "page-refused-2")
    wait_for(
        lambda: "account 'zed' does not exist on the target bank" in text(browser, "#message"),
        what="the refusal",
    )
    assert row_status(browser, "page-refused-2") is None


def test_a_failed_and_a_compensated_transfer_show_as_such(
    played: LocalConsole, browser: Chrome
) -> None:
    start_from_page(browser, "erin", "dave", "50.00", "page-failed-1")
    wait_for(lambda: row_status(browser, "page-failed-1") == "failed", what="the failure")
    # The steps decide "failed" before the saga's result is in: its reason comes with the result.
    wait_for(
        lambda: "insufficient_funds" in text(browser, 'tr[data-transfer="page-failed-1"]'),
        what="the reason",
    )
    assert played.op_counts("page-failed-1") == dict.fromkeys(
        (f"page-failed-1-{kind}" for kind in ("debit", "credit", "reversal")), 0
    )

    # The crash demo's compensation: frank closes while the credit to him is held.
    click(browser, "hold-credit")
    start_from_page(browser, "bob", "frank", "40.00", "page-comp-1")
    wait_for(lambda: "holding page-comp-1-credit" in text(browser, "#bank-target"), what="the hold")
    account = browser.find_element(By.ID, "acct-id")
    account.clear()
    account.send_keys("frank")
    assert text(browser, "#acct-cli") == "crossbank accounts close|open frank --bank target"
    click(browser, "acct-close")
    wait_for(lambda: "account frank is closed" in text(browser, "#message"), what="frank closed")
    click(browser, "release")
    wait_for(lambda: row_status(browser, "page-comp-1") == "compensated", what="the compensation")
    wait_for(lambda: "reversal: applied" in text(browser, "#detail"), what="the reversal")
    click(browser, "acct-open")
    wait_for(lambda: "account frank is open" in text(browser, "#message"), what="frank reopened")
    # The poll that sees frank open draws both banks' cards again: read them within wait_for,
    # which looks again when an element it found was just replaced.
    wait_for(lambda: balance(browser, "source", "bob") == "250.00", what="bob's balance")
    wait_for(lambda: text(browser, "#total") == text(browser, "#opening-total"), what="totals")


def test_kill_the_worker_from_the_page_and_the_transfer_still_finishes(
    played: LocalConsole, browser: Chrome
) -> None:
    transfer_id = "page-crash-1"
    click(browser, "hold-credit")
    wait_for(lambda: "hold the next credit" in text(browser, "#message"), what="the hold set")

    start_from_page(browser, "alice", "dave", "75.00", transfer_id)
    # The worker says it runs the transfer, and the target bank holds its credit.
    wait_for(
        lambda: f"holding {transfer_id}-credit" in text(browser, "#bank-target"),
        what="the credit held",
    )
    victim = wait_for(
        lambda: enabled(browser, "kill-worker"), what="the kill button naming the worker"
    )
    assert "SIGKILL worker-" in victim.text
    assert text(browser, "#detail").count("kill -9 ") == 1
    # Half done: money left alice and has not reached dave.
    assert balance(browser, "target", "dave") == "50.00"
    wait_for(lambda: in_flight(browser) == "7500", what="75.00 in flight on the chart")
    assert "75.00" in chart_text(browser, "#chart-flight-now")
    victim.click()
    wait_for(lambda: "SIGKILL worker-" in text(browser, "#message"), what="the kill")
    wait_for(
        lambda: "not running" in text(browser, "#worker-list"), what="the killed worker shown dead"
    )
    assert not any(w.running() for w in played.system.workers)

    click(browser, "release")
    click(browser, "start-worker")
    wait_for(lambda: "is up (pid" in text(browser, "#message"), what="the new worker")

    wait_for(
        lambda: row_status(browser, transfer_id) == "committed", within=40, what="the takeover"
    )
    wait_for(lambda: balance(browser, "target", "dave") == "125.00", what="dave credited")
    assert text(browser, "#total") == text(browser, "#opening-total") == "1,310.00"
    wait_for(lambda: in_flight(browser) == "0", what="nothing in flight on the chart")
    assert played.op_counts(transfer_id) == {
        f"{transfer_id}-debit": 1,
        f"{transfer_id}-credit": 1,
        f"{transfer_id}-reversal": 0,
    }
    wait_for(lambda: "done: committed" in text(browser, "#detail"), what="the timeline")
    # The page's own account of what changed, newest first.
    activity = text(browser, "#activity")
    assert f"target bank holds {transfer_id}-credit" in activity
    assert "is gone (pid" in activity
    assert f"{transfer_id}: in progress → committed" in activity
    assert activity.index("committed") < activity.index("is gone")
    screenshot = os.environ.get("CONSOLE_SCREENSHOT")
    if screenshot:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.get_screenshot_as_file(screenshot)


def test_the_live_charts_count_what_the_table_lists(played: LocalConsole, browser: Chrome) -> None:
    """The charts read the banks' /metrics; the table reads the store and the ledgers' op ids."""
    start_from_page(browser, "alice", "carol", "1.25", "page-chart-1")
    wait_for(lambda: row_status(browser, "page-chart-1") == "committed", what="the commit")
    # Committed in the last seconds: a rate above zero (the rate is over 5 s), drawn as a line.
    wait_for(
        lambda: float(figure(browser, "rates", '[data-outcome="committed"]', "data-rate") or 0) > 0,
        what="a committed rate above zero",
    )
    assert "/s (" in chart_text(browser, '#chart-rates-now [data-outcome="committed"]')
    assert "L" in line(browser, "chart-rates", "committed")
    # Each bank's step times, in ms, from its POST /entries histogram (over 10 s).
    for bank in ("source", "target"):
        wait_for(partial(timed, browser, bank), what=f"the {bank} bank's p50")
        shown = chart_text(browser, f'#chart-latency-now [data-bank="{bank}"]')
        assert shown.startswith(f"{bank} p50 "), shown
        assert " ms · p99 " in shown, shown
        assert shown.endswith(("request)", "requests)")), shown
        assert line(browser, "chart-latency", f"{bank}-p50").startswith("M")

    def agree() -> bool:
        for outcome in ("committed", "compensated", "failed"):
            rows = browser.find_elements(By.CSS_SELECTOR, f'tr[data-status="{outcome}"]')
            if chart_count(browser, outcome) != str(len(rows)):
                return False
        return True

    # The "all" filter lists every transfer this page started: each is counted once.
    browser.find_element(By.CSS_SELECTOR, '[data-filter="all"]').send_keys(Keys.ENTER)
    wait_for(agree, what="the chart's counts and the table's rows to agree")
    assert int(chart_count(browser, "committed") or 0) >= 1
    assert in_flight(browser) == "0"
    assert "0.00" in chart_text(browser, "#chart-flight-now")
    assert "L" in line(browser, "chart-flight", "in-flight")


# The charts are drawn again at every poll: each read is one script, never a stale element.


def chart_text(browser: Chrome, css: str) -> str:
    found = browser.execute_script(
        "const node = document.querySelector(arguments[0]); return node && node.textContent", css
    )
    return str(found or "")


def figure(browser: Chrome, chart: str, css: str, attribute: str) -> str | None:
    found = browser.execute_script(
        "const node = document.querySelector(arguments[0]);"
        "return node && node.getAttribute(arguments[1])",
        f"#chart-{chart}-now {css}",
        attribute,
    )
    return None if found is None else str(found)


def chart_count(browser: Chrome, outcome: str) -> str | None:
    return figure(browser, "rates", f'[data-outcome="{outcome}"]', "data-count")


def in_flight(browser: Chrome) -> str | None:
    return figure(browser, "flight", "[data-cents]", "data-cents")


def line(browser: Chrome, chart: str, series: str) -> str:
    """The ``d`` of a chart's line: ``M`` where it starts or starts again after a gap, ``L`` on."""
    found = browser.execute_script(
        "const node = document.querySelector(arguments[0]); return node && node.getAttribute('d')",
        f'#{chart} path[data-series="{series}"]',
    )
    return str(found or "")


def timed(browser: Chrome, bank: str) -> bool:
    """Whether the latency chart has a p50 for ``bank`` now."""
    return float(figure(browser, "latency", f'[data-bank="{bank}"]', "data-p50") or 0) > 0


def test_a_bank_that_is_down_shows_as_down_not_as_zero(
    played: LocalConsole, browser: Chrome
) -> None:
    played.system.kill(TARGET)
    try:
        wait_for(lambda: "target bank DOWN" in text(browser, "#bank-target"), what="the outage")
        assert not browser.find_elements(By.CSS_SELECTOR, "#bank-target td.num")
        assert "total unknown" in text(browser, "#totals")
        assert "the target bank is down" in text(browser, "#totals")
        assert balance(browser, "source", "alice") != ""
        # The charts: what needs the target bank is unknown, shown so, never 0.
        wait_for(
            lambda: "target bank DOWN" in chart_text(browser, "#chart-flight-now"),
            what="the charts' outage",
        )
        assert in_flight(browser) == ""
        assert chart_count(browser, "committed") is None
        assert "committed: target bank DOWN" in chart_text(browser, "#chart-rates-now")
        assert "target bank DOWN" in chart_text(browser, '#chart-latency-now [data-bank="target"]')
        assert chart_count(browser, "failed") not in (None, "")  # the source bank still answers
        assert browser.find_elements(By.CSS_SELECTOR, "#chart-flight rect.down-band")
    finally:
        played.system.restart(TARGET)
    # Back with a balance again (its figure depends on which of this module's tests ran here).
    wait_for(
        lambda: (
            "target bank DOWN" not in text(browser, "#bank-target")
            and balance(browser, "target", "dave") != ""
        ),
        what="the bank back",
    )


def finished_from_page(browser: Chrome, source: str, amount: str, transfer_id: str) -> str:
    """Start a transfer to dave from the page and wait until its row is final; its status.

    For a test that needs a row of its own: a parallel run may give this
    module's tests to several workers, each with a console of its own, so a
    row made by another test may not be there.
    """
    start_from_page(browser, source, "dave", amount, transfer_id)

    def final() -> str | None:
        status = row_status(browser, transfer_id)
        return status if status in ("committed", "failed") else None

    return wait_for(final, what=f"{transfer_id} finished")


def test_a_store_that_is_down_is_named(played: LocalConsole, browser: Chrome) -> None:
    assert finished_from_page(browser, "alice", "1.00", "page-down-1") == "committed"
    played.system.kill(STORE)
    try:
        wait_for(
            lambda: "the promise store did not answer" in text(browser, "#system"),
            within=30,
            what="the store outage",
        )
        assert row_status(browser, "page-down-1") == "committed"  # its last known state
    finally:
        played.system.restart(STORE)
    wait_for(lambda: "did not answer" not in text(browser, "#system"), what="the store back")


def test_filters_by_status_from_the_keyboard(played: LocalConsole, browser: Chrome) -> None:
    assert finished_from_page(browser, "alice", "1.00", "page-filter-ok") == "committed"
    assert finished_from_page(browser, "erin", "500.00", "page-filter-poor") == "failed"
    committed = browser.find_element(By.CSS_SELECTOR, '[data-filter="committed"]')
    committed.send_keys(Keys.ENTER)
    assert committed.get_attribute("aria-pressed") == "true"
    statuses = {
        r.get_attribute("data-status")
        for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-transfer]")
    }
    assert statuses == {"committed"}
    browser.find_element(By.CSS_SELECTOR, '[data-filter="failed"]').send_keys(Keys.ENTER)
    failed = {
        r.get_attribute("data-transfer")
        for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-transfer]")
    }
    # page-failed-1 too, when the test that makes it ran on this worker's console
    assert failed - {"page-failed-1"} == {"page-filter-poor"}
    browser.find_element(By.CSS_SELECTOR, '[data-filter="attention"]').send_keys(Keys.ENTER)
    assert not browser.find_elements(By.CSS_SELECTOR, "tr[data-transfer]")
    browser.find_element(By.CSS_SELECTOR, '[data-filter="all"]').send_keys(Keys.ENTER)


def test_fits_a_phone_screen(played: LocalConsole) -> None:
    with chromium(PHONE) as phone:
        phone.get(played.address)
        wait_for(lambda: phone.find_element(By.CSS_SELECTOR, "body[data-loaded]"), what="loading")
        overflow = phone.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 1, f"the page is {overflow}px wider than a phone"
        assert phone.find_element(By.ID, "total").is_displayed()
        assert phone.find_element(By.ID, "from").is_displayed()


def test_with_a_token_the_page_asks_for_it_first(played: LocalConsole) -> None:
    settings = ConsoleSettings(port=free_port(), token="page-token")
    with (
        ConsoleThread(played.system.settings, settings) as console,
        chromium(DESKTOP) as page,
    ):
        page.get(console.address or "")
        token = wait_for(lambda: shown(page, "token"), what="the token form")
        assert not page.find_element(By.ID, "main").is_displayed()
        token.send_keys("not-it", Keys.ENTER)
        wait_for(
            lambda: "not this console's token" in text(page, "#login-error"), what="the refusal"
        )
        assert not page.find_element(By.ID, "main").is_displayed()
        token.clear()
        token.send_keys("page-token", Keys.ENTER)
        wait_for(lambda: page.find_element(By.CSS_SELECTOR, "body[data-loaded]"), what="the page")
        assert text(page, "#total") == "1,310.00"
        assert "Only a console started by crossbank demo" in text(page, "#worker-list")


def test_a_page_that_went_away_frees_its_place(played: LocalConsole) -> None:
    """With room for one page, a reload is served within seconds: the page it replaced let go."""
    settings = ConsoleSettings(port=free_port(), max_clients=1)
    with (
        ConsoleThread(played.system.settings, settings) as console,
        chromium(DESKTOP) as page,
    ):
        for _ in range(2):
            page.get("about:blank")
            page.get(console.address or "")
            wait_for(
                lambda: page.find_element(By.CSS_SELECTOR, "body[data-loaded]"),
                within=8,
                what="the page loading in its freed place",
            )
