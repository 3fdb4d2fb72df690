"""legato.spec."""
