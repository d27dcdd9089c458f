"""Shared library of the ticketing services: errors, auth, settings, database, event bus, logging, metrics."""
