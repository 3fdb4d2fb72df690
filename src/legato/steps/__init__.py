"""legato.steps."""
