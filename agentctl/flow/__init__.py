"""Coordination: routing, pipelines, escalations, dead letters, the halted state."""
