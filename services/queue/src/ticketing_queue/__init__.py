"""The queue service: events' waiting rooms."""
