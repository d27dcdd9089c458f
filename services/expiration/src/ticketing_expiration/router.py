"""HTTP routes of the expiration service: none of its own. It works on events alone; ``create_app`` gives it
health, readiness and metrics like every service."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
