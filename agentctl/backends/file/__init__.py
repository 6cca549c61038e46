"""The file workspace: the backend of `agents.yaml` without a `transport:`."""
