"""source_bank."""
