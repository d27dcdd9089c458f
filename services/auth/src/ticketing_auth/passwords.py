"""Argon2id password hashing off the event loop, with a bounded number of hashes at once.

Verifying against an unknown user runs against a dummy hash made with the same parameters, so "no such user"
costs the same time as "wrong password".
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ticketing_auth.config import Settings

logger = logging.getLogger("ticketing.auth")


class Passwords:
    """Hashes and verifies passwords with the configured Argon2id parameters."""

    def __init__(self, *, time_cost: int, memory_cost: int, parallelism: int, concurrency: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        # Each hash takes memory_cost KiB and a core for its whole duration: admit only a few at once.
        self._slots = asyncio.Semaphore(concurrency)

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
            concurrency=settings.password_hash_concurrency,
        )

    async def hash(self, password: str) -> str:
        """A new Argon2id hash of ``password`` (random salt)."""
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``None`` (no such user) costs a verification too and is always False."""
        async with self._slots:
            matches = await asyncio.to_thread(self._matches, password_hash or self._dummy_hash, password)
        return matches and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return False

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            # A stored hash that cannot be checked: refuse, and say so without the hash itself.
            logger.error("stored password hash is unreadable")
            return False
