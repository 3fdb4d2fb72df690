"""legato.store."""
