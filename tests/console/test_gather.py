"""How the console sorts what it read: the filter a transfer falls in, and totals that need both banks."""

from __future__ import annotations

from orchestrator.console.gather import _category, _totals


def test_a_transfer_compensating_too_long_needs_attention_whatever_its_status() -> None:
    assert _category("compensating", True) == "attention"
    assert _category("compensating", False) == "in_progress"
    assert _category("in_progress", False) == "in_progress"
    for status in ("committed", "compensated", "failed"):
        assert _category(status, False) == status


def test_no_total_while_a_bank_is_down() -> None:
    up = {"up": True, "total": 100, "opening_total": 100}
    down = {"up": False, "error": "target bank not reachable"}
    totals = _totals({"source": up, "target": down})
    assert totals == {"known": False, "why": "the target bank is down: no total"}
    both = _totals({"source": up, "target": {**up, "total": 50, "opening_total": 0}})
    assert both["known"] is True
    assert both["total_text"] == "1.50"
    assert both["equal"] is False
