"""legato.observe."""
