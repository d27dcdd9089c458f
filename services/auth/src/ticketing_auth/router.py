"""HTTP routes of the auth service, under ``/api/users``: thin, the use cases live in ``service.py``."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/users", tags=["auth"])
