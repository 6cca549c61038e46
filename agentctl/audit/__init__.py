"""Reading the audit trail back: thread history, verify, the status overview."""
