"""HTTP routes of the tickets service, under ``/api/tickets``: thin, the use cases live in ``service.py``."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/tickets", tags=["tickets"])
