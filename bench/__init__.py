"""Benchmarks: crossbank side by side with durable-execution peers on the same banks."""
