"""Tests of the bank service, run as real processes over real HTTP."""
