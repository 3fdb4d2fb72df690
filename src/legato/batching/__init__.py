"""legato.batching."""
