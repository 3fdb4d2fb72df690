"""legato.executors."""
