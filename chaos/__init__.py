"""A seeded chaos campaign: concurrent transfers under random faults, then an audit."""
