"""Adapters to the operating system that are not stores or the wire: the system clock,
Ed25519 signing, logs, counters, network interfaces, and the limits a node keeps."""
