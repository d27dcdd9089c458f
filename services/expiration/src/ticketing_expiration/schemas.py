"""Request and response bodies of the expiration service: none, as it has no HTTP API of its own. The events it
reads and the ``order.expired`` it schedules are the shared catalogue's (``ticketing_common.events``)."""
