"""NATS JetStream: the transport for a team that outgrows one machine (docs/NATS.md)."""
