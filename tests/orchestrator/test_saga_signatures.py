"""The saga's steps carry their signature, so the SDK does not recompute it on every step.

The SDK calls ``inspect.signature`` on a step each time it runs one; a step
that carries ``__signature__`` is answered from it. It must be the very
signature ``inspect`` computes from the function, or argument checks and
coercion would change.
"""

from __future__ import annotations

import copy
import inspect
import types
from typing import Any

import pytest
from resonate.durable import DurableFunction

from orchestrator import saga

STEPS = [saga.apply_entry, saga.fence_entry, saga.begin_compensation, saga.reverse_debit]


def computed_signature(step: Any) -> inspect.Signature:
    """What ``inspect`` computes from ``step``'s code and annotations, ignoring ``__signature__``."""
    bare = types.FunctionType(step.__code__, step.__globals__, step.__name__, step.__defaults__)
    bare.__annotations__ = copy.copy(step.__annotations__)
    bare.__kwdefaults__ = step.__kwdefaults__
    return inspect.signature(bare)


@pytest.mark.parametrize("step", STEPS, ids=lambda step: step.__name__)
def test_each_step_carries_the_signature_inspect_computes(step: Any) -> None:
    assert "__signature__" in vars(step)
    assert step.__signature__ == computed_signature(step)


@pytest.mark.parametrize("step", STEPS, ids=lambda step: step.__name__)
def test_the_sdk_takes_a_step_without_recomputing_its_signature(
    step: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = list(computed_signature(step).parameters)[1:]

    def recomputed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the signature was computed again")

    monkeypatch.setattr(inspect, "_signature_from_function", recomputed)
    durable = DurableFunction(step)
    assert list(durable._user_sig.parameters) == names


def test_a_call_that_does_not_fit_a_step_is_still_refused() -> None:
    durable = DurableFunction(saga.begin_compensation)
    durable.pack_args("t-1", None)
    with pytest.raises(Exception, match="begin_compensation"):
        durable.pack_args("t-1", None, "one too many")
