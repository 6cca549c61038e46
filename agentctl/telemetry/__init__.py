"""OpenTelemetry traces of every run: live export and `agentctl trace export` (issue 18)."""
