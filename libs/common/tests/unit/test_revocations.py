"""What a service remembers of ended sessions, and for how long."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ticketing_common.auth import UserPayload
from ticketing_common.events import SessionRevoked
from ticketing_common.revocations import Revocations

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
