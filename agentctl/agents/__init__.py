"""Agents that ship with agentctl, used by the bundled agents.yaml."""
