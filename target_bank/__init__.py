"""target_bank."""
