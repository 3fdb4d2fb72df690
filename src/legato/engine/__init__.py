"""legato.engine."""
