"""A start the caller gave up on still hears its transfer's result, pushed, on the next start.

The SDK's handle awaited its creation future bare, so a ``wait_for`` around
the start cancelled that future; the SDK's create, finishing afterwards, died
on it ("background task failed: invalid state") before registering for the
result, and a second start of the same id waited for the client's refresh
loop (``CLIENT_POLL_SECONDS``) instead of the push (chaos/README.md, "Findings").
"""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.runtime import CLIENT_POLL_SECONDS, resonate_session
from orchestrator.transfers import TransferRequest, start_transfer
from tests.orchestrator.cluster import Cluster

pytestmark = pytest.mark.anyio


async def test_a_start_given_up_on_still_hears_the_result(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    await cluster.seed({"rita": 900}, {"sam": 0}, closed=())
    settings = cluster.settings
    request = TransferRequest("t-given-up", "rita", "sam", 100)
    async with resonate_session(settings, role="client") as resonate:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(start_transfer(resonate, settings, request), 0.0001)
        handle = await start_transfer(resonate, settings, request)
        # Pushed within moments; the refresh loop would take CLIENT_POLL_SECONDS.
        result = await asyncio.wait_for(handle.result(), CLIENT_POLL_SECONDS / 2)

    assert result["status"] == "committed"
    assert "invalid state" not in caplog.text
    assert await cluster.violations() == []
