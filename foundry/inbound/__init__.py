"""Inbound deliveries: signature checks on raw bytes and parsing into domain events. No I/O."""
