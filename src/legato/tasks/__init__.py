"""legato.tasks."""
