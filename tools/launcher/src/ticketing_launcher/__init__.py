"""The dev launcher: `ticketing up`."""
