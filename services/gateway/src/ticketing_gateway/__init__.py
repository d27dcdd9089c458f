"""The local gateway."""
