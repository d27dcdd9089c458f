"""A local stand-in for Stripe's HTTP API (charges with test tokens and idempotency keys)."""
