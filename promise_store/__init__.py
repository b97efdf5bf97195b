"""promise_store."""
