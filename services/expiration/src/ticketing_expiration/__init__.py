"""The expiration service."""
