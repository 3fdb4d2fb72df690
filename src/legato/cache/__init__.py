"""legato.cache."""
