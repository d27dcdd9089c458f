"""HTTP routes of the orders service, under ``/api/orders``: thin, the use cases live in ``service.py``."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/orders", tags=["orders"])
