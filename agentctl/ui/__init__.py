"""`agentctl ui`: the local dashboard (issue 17)."""
