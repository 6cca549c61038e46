"""The on-disk protocol: file primitives, mailboxes, the journal, status files, the watcher."""
