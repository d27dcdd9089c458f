"""Benchmarks of the ticketing platform."""
