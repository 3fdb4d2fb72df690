"""legato.mcp."""
