"""``crossbank console``: a live web page over the banks and the store, for watching sagas run.

The console reads what the banks and the promise store (or Resonate on
Postgres) answer, at a bounded rate, and pushes what changed to each open page
over server-sent events. It keeps no money state of its own: every figure on
the page is a bank's or the store's answer, and the page says whose. In the
local demo it also acts on the processes the demo started (kill a worker,
start one, hold a credit), through :class:`orchestrator.console.local.LocalControl`.
Any console that is not read-only can cancel a transfer or make it retry now
(:mod:`orchestrator.operations`, as ``crossbank cancel`` and ``crossbank retry``),
and every action it takes leaves an operator record (:mod:`orchestrator.operator_log`).
"""
