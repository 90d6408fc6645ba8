"""The identity rules, without I/O."""
