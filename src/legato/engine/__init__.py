"""Running flows and tasks: states, retries, timeouts, caching, hooks and results."""
