"""legato.routing."""
