"""The event spine: envelope, outbox relay, topology, consumers, and the two brokers."""
