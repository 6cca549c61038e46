"""The roster: its file, its schema and validation, and `agentctl init`'s scaffold."""
