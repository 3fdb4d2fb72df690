"""legato.resilience."""
