"""Ended sessions, as every service keeps them: in memory, from the ``session.revoked`` events on the stream, followed
live and read again from JetStream at start, so a restarted service still refuses them; each is forgotten once
every token it concerns has expired."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from ticketing_common.events.catalogue import SessionRevoked, Subject

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from ticketing_common.auth import UserPayload

logger = logging.getLogger("ticketing.sessions")

PRUNE_EVERY_SECONDS = 60.0
# Two missed heartbeats make the client recreate a consumer the server lost (a restart): about 2 s, not nats-py's 10.
HEARTBEAT_SECONDS = 1.0


class Revocations:
    """Which sessions are over. ``ready`` once the events already on the stream have been read: until then a
    service cannot tell a revoked session from a live one."""

    def __init__(self, *, token_seconds: int) -> None:
        self.token_seconds = token_seconds
        self.ready = False
        self._sessions: dict[uuid.UUID, float] = {}  # session id -> when its tokens have all expired
        self._users: dict[uuid.UUID, tuple[float, float]] = {}  # user id -> (revoked before, forget after)
        self._pruned = time.time()

    def is_revoked(self, user: UserPayload) -> bool:
        if user.sid in self._sessions:
            return True
        before = self._users.get(user.id)
        return before is not None and user.iat < before[0]

    def apply(self, event: SessionRevoked, *, now: float | None = None) -> None:
        moment = time.time() if now is None else now
        cutoff = event.revoked_before.timestamp()
        forget_after = cutoff + self.token_seconds
        if forget_after <= moment:
            return  # every token it concerns has expired already
        if event.session_id is not None:
            self._sessions[event.session_id] = forget_after
        else:
            previous = self._users.get(event.user_id)
            if previous is None or previous[0] < cutoff:
                self._users[event.user_id] = (cutoff, forget_after)
        if moment - self._pruned >= PRUNE_EVERY_SECONDS:
            self.prune(now=moment)

    def prune(self, *, now: float | None = None) -> None:
        """Forget what no unexpired token can match any more."""
        moment = time.time() if now is None else now
        self._pruned = moment
        self._sessions = {sid: until for sid, until in self._sessions.items() if until > moment}
        self._users = {uid: entry for uid, entry in self._users.items() if entry[1] > moment}

    def __len__(self) -> int:
        return len(self._sessions) + len(self._users)

    async def follow(self, nc: NATS, *, stream: str) -> None:
        """Read every ``session.revoked`` event on the stream, then keep following: an ordered consumer of this
        process alone (every replica must see every revocation). From the stream's start, not one token lifetime
        back: when the server restarts, the client recreates the consumer from the start, and applying an event
        twice or one whose tokens have expired changes nothing."""
        js: JetStreamContext = nc.jetstream()
        subscription = await js.subscribe(
            Subject.SESSION_REVOKED,
            stream=stream,
            ordered_consumer=True,
            idle_heartbeat=HEARTBEAT_SECONDS,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
            cb=self._on_message,
        )
        info = await subscription.consumer_info()
        if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
            self._caught_up()  # nothing to read; otherwise the last message read says so

    async def _on_message(self, msg: Msg) -> None:
        try:
            self.apply(SessionRevoked.model_validate_json(msg.data))
        except ValidationError:
            logger.error("unreadable session.revoked event", extra={"data": msg.data[:200].decode(errors="replace")})
        if not self.ready and msg.metadata.num_pending == 0:
            self._caught_up()

    def _caught_up(self) -> None:
        if not self.ready:
            self.ready = True
            logger.info("session revocations loaded", extra={"revoked": len(self)})
