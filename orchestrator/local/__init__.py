"""crossbank as local processes, for the demos, tests, chaos and benchmarks; nothing here ships
to a deployment: the processes (``supervisor``), the whole local system (``system``), and the
demos (``demo``, ``crash_demo``) with their stage helpers (``stage``)."""
