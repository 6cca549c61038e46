"""The data types at the bottom: messages, ids, names, verdicts, errors, constants."""
