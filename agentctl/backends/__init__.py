"""Where messages and events live: the interface, the file workspace and NATS JetStream."""
