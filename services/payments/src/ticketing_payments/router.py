"""HTTP routes of the payments service, under ``/api/payments``: thin, the use cases live in ``service.py``."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/payments", tags=["payments"])
