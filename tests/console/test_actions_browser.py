"""The operator's actions on the console's page, in a real browser (Debian's headless Chromium).

A transfer whose credit the target bank holds is retried (nothing to do: it
is not sleeping) and then cancelled from its timeline, with a reason; it
ends compensated, reason ``cancelled``, and the page shows who cancelled it
and why, its operator record, and beside each action the command that does
the same. A read-only console's page shows the commands and no buttons.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from orchestrator.console.browser import DESKTOP, chromium, wait_for
from orchestrator.console.config import ConsoleSettings
from orchestrator.console.running import ConsoleThread
from orchestrator.local.supervisor import free_port
from tests.console.conftest import LocalConsole, local_console, page_of
from tests.console.test_browser import click, row_status, shown, start_from_page, text


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConsole]:
    with local_console(tmp_path_factory.mktemp("actions-page")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(played: LocalConsole) -> Iterator[Chrome]:
    with page_of(played) as driver:
        yield driver


def record(browser: Chrome) -> list[str]:
    """The shown transfer's operator record: one action per row, oldest first."""
    return [
        str(row.get_attribute("data-action"))
        for row in browser.find_elements(By.CSS_SELECTOR, "#operator-record tr[data-action]")
    ]


def test_cancel_from_the_page_with_a_reason(played: LocalConsole, browser: Chrome) -> None:
    tid = "page-cancel-1"
    operator = f"{played.system.settings.operator} (console)"
    click(browser, "hold-credit")
    start_from_page(browser, "alice", "dave", "6.00", tid)
    wait_for(lambda: f"holding {tid}-credit" in text(browser, "#bank-target"), what="the hold")

    # Its timeline opened by itself, with the operator's actions and their commands.
    wait_for(lambda: shown(browser, "cancel-transfer"), what="the cancel button")
    assert text(browser, "#cancel-cli") == f'crossbank cancel {tid} --reason "..."'
    assert text(browser, "#retry-cli") == f"crossbank retry {tid}"
    assert text(browser, "#operator-by") == f"(recorded as by {operator})"
    assert "no operator action recorded" in text(browser, "#detail")

    # Retry now: it is not sleeping between attempts (its credit is held), so nothing changes.
    click(browser, "retry-transfer")
    wait_for(lambda: "not waiting between attempts" in text(browser, "#message"), what="retry")
    assert "warn" in (browser.find_element(By.ID, "message").get_attribute("class") or "")
    wait_for(lambda: record(browser) == ["retry"], what="the retry on the record")

    # Without a reason the page asks for one; nothing is sent.
    click(browser, "cancel-transfer")
    wait_for(lambda: "a cancel needs a reason" in text(browser, "#message"), what="the refusal")
    assert record(browser) == ["retry"]

    reason = "customer's request"
    browser.find_element(By.ID, "cancel-reason").send_keys(reason)
    expected = shlex.join(["crossbank", "cancel", tid, "--reason", reason])
    assert text(browser, "#cancel-cli") == expected
    click(browser, "cancel-transfer")
    wait_for(lambda: f"cancelled {tid}: its credit" in text(browser, "#message"), what="cancel")
    assert expected in text(browser, "#message")
    wait_for(lambda: record(browser) == ["retry", "cancel"], what="the cancel on the record")

    click(browser, "release")
    wait_for(lambda: row_status(browser, tid) == "compensated", what="the compensation")
    wait_for(lambda: "reason: cancelled" in text(browser, "#detail"), what="the reason")
    wait_for(lambda: record(browser) == ["retry", "cancel", "release"], what="the release recorded")
    assert text(browser, "#detail-cancelled").startswith(f"cancelled by {operator} at ")
    assert reason in text(browser, "#detail-cancelled")
    cancel_row = text(browser, '#operator-record tr[data-action="cancel"]')
    assert operator in cancel_row
    assert reason in cancel_row
    assert "cancelled_after_debit" in cancel_row
    assert not shown(browser, "operator")  # finished: nothing left to cancel or retry
    assert played.op_counts(tid) == {f"{tid}-debit": 1, f"{tid}-credit": 0, f"{tid}-reversal": 1}


def test_a_read_only_page_shows_the_commands_not_the_buttons(played: LocalConsole) -> None:
    tid = "page-read-only-1"
    assert played.post("/api/faults/hold-credit", {"transfer_id": tid})[0] == 200
    status, _ = played.post(
        "/api/transfers", {"from": "bob", "to": "dave", "amount": "2.00", "id": tid}
    )
    assert status == 200
    settings = ConsoleSettings(port=free_port(), read_only=True)
    try:
        with (
            ConsoleThread(played.system.settings, settings) as console,
            chromium(DESKTOP) as page,
        ):
            page.get(console.address or "")
            opener = wait_for(
                lambda: page.find_element(By.CSS_SELECTOR, f'tr[data-transfer="{tid}"] button'),
                what="the transfer's row",
            )
            opener.click()
            wait_for(lambda: shown(page, "operator"), what="the operator's block")
            assert "read-only (CONSOLE_READ_ONLY)" in text(page, "#operator-read-only")
            assert not page.find_element(By.ID, "cancel-transfer").is_displayed()
            assert not page.find_element(By.ID, "retry-transfer").is_displayed()
            assert text(page, "#cancel-cli") == f'crossbank cancel {tid} --reason "..."'
            assert text(page, "#retry-cli") == f"crossbank retry {tid}"
    finally:
        assert played.post("/api/faults/release")[0] == 200
    status, shown_detail = played.get(f"/api/transfers/{tid}")
    assert status == 200
    assert [a["action"] for a in shown_detail["operator_actions"]] == ["hold", "release"]
