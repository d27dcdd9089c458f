"""What a service remembers of ended sessions, and for how long."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ticketing_common.auth import SessionVerifier, UserPayload
from ticketing_common.events import SessionRevoked
from ticketing_common.revocations import Revocations
from ticketing_common.testing import TEST_SIGNING_KEY, claims_of, session_token

pytestmark = pytest.mark.unit

HOUR = 3600
NOW = 1_800_000_000.0


def _session(user_id: uuid.UUID, *, iat: float, sid: uuid.UUID | None = None) -> UserPayload:
    return UserPayload(
        id=user_id, email="a@b.co", sid=sid or uuid.uuid4(), jti=uuid.uuid4(), iat=iat, exp=int(iat) + HOUR
    )


def _at(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


def test_a_revoked_session_is_refused_and_the_users_other_sessions_are_not() -> None:
    revocations = Revocations(token_seconds=HOUR)
    user = uuid.uuid4()
    ended, other = _session(user, iat=NOW - 10), _session(user, iat=NOW - 10)

    revocations.apply(SessionRevoked(user_id=user, session_id=ended.sid, revoked_before=_at(NOW)), now=NOW)

    assert revocations.is_revoked(ended)
    assert not revocations.is_revoked(other)


def test_every_session_issued_before_the_moment_is_refused_and_one_issued_at_it_is_not() -> None:
    revocations = Revocations(token_seconds=HOUR)
    user = uuid.uuid4()
    cutoff = round(NOW + 0.123, 3)

    revocations.apply(SessionRevoked(user_id=user, session_id=None, revoked_before=_at(cutoff)), now=NOW)

    assert revocations.is_revoked(_session(user, iat=cutoff - 0.001))
    assert not revocations.is_revoked(_session(user, iat=cutoff))
    assert not revocations.is_revoked(_session(uuid.uuid4(), iat=cutoff - 100))


def test_a_later_cutoff_wins_whatever_order_the_events_come_in() -> None:
    revocations = Revocations(token_seconds=HOUR)
    user = uuid.uuid4()

    revocations.apply(SessionRevoked(user_id=user, session_id=None, revoked_before=_at(NOW)), now=NOW)
    revocations.apply(SessionRevoked(user_id=user, session_id=None, revoked_before=_at(NOW - 50)), now=NOW)

    assert revocations.is_revoked(_session(user, iat=NOW - 10))


def test_revocations_are_forgotten_once_every_token_they_concern_has_expired() -> None:
    revocations = Revocations(token_seconds=HOUR)
    user = uuid.uuid4()
    revocations.apply(SessionRevoked(user_id=user, session_id=uuid.uuid4(), revoked_before=_at(NOW)), now=NOW)
    revocations.apply(SessionRevoked(user_id=user, session_id=None, revoked_before=_at(NOW)), now=NOW)
    revocations.apply(SessionRevoked(user_id=user, session_id=uuid.uuid4(), revoked_before=_at(NOW - HOUR)), now=NOW)

    assert len(revocations) == 2
    revocations.prune(now=NOW + HOUR - 1)
    assert len(revocations) == 2
    revocations.prune(now=NOW + HOUR)
    assert len(revocations) == 0


class _TestKeys:
    loaded = True

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return TEST_SIGNING_KEY.private_key.public_key() if kid == TEST_SIGNING_KEY.kid else None

    async def refresh(self) -> bool:
        return True


async def test_a_remembered_token_is_still_refused_once_revoked_or_expired() -> None:
    revocations = Revocations(token_seconds=HOUR)
    revocations.ready = True
    clock = [time.time()]
    verifier = SessionVerifier(_TestKeys(), revocations, remember=2, clock=lambda: clock[0])
    token = session_token(expires_seconds=60)
    user = claims_of(token)
    other = session_token(expires_seconds=60)

    assert await verifier.verify(token) == user
    assert await verifier.verify(token) == user  # remembered
    assert await verifier.verify(other) is not None
    revocations.apply(SessionRevoked(user_id=user.id, session_id=user.sid, revoked_before=_at(user.iat + 1)))
    assert await verifier.verify(token) is None  # remembered, but revoked since
    clock[0] += 61
    assert await verifier.verify(other) is None  # remembered, but expired since
