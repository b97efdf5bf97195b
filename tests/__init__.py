"""crossbank's tests: real processes over real HTTP."""
