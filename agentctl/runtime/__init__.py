"""Running agents: the supervisor, the worker and its handlers."""
