"""How often a buyer may try to place an order: a token bucket per buyer, in this process's memory.

Each buyer may send ``rate`` attempts a second on average and ``burst`` at once; beyond, 429 with ``Retry-After``.
The buckets are per replica (n replicas let a buyer through up to n times the rate, as a load balancer spreads
their requests), which is enough for the job: a buyer (or a script) hammering the service during a sale cannot
take a replica's capacity, nor hold many waits for an admission. Memory is bounded: a bucket idle long enough to
be full again is forgotten (it would allow as much as no bucket), and at most ``max_buyers`` are kept (the least
recently seen are forgotten first).
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from ticketing_common.errors import TooManyRequestsError

TOO_MANY_ATTEMPTS = "Too many order attempts: retry shortly"


class AttemptLimiter:
    """Token buckets by buyer: ``take`` spends one attempt or tells how long until one is there."""

    def __init__(
        self, *, rate: float, burst: int, max_buyers: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1 or max_buyers < 1:
            raise ValueError("rate must be > 0, burst and max_buyers >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_buyers = max_buyers
        self._clock = clock
        self._refill_seconds = self.burst / rate
        # buyer -> (tokens left, when counted), least recently seen first.
        self._buckets: OrderedDict[uuid.UUID, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, buyer: uuid.UUID) -> float:
        """Spend one of ``buyer``'s attempts now: 0.0 when there was one, else the seconds until there is (none
        spent)."""
        now = self._clock()
        self._forget_full(now)
        tokens, counted = self._buckets.pop(buyer, (self.burst, now))
        tokens = min(self.burst, tokens + (now - counted) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[buyer] = (tokens, now)  # the most recently seen, last
        if len(self._buckets) > self.max_buyers:
            self._buckets.popitem(last=False)
        return wait

    def check(self, buyer: uuid.UUID) -> None:
        """Spend one of ``buyer``'s attempts, or refuse with 429 and ``Retry-After`` (whole seconds, at least 1)."""
        wait = self.take(buyer)
        if wait > 0:
            raise TooManyRequestsError(TOO_MANY_ATTEMPTS, retry_after=math.ceil(wait))

    def _forget_full(self, now: float) -> None:
        # The oldest first: once one was seen too recently to be full again, so were all after it.
        while self._buckets:
            buyer, (_, counted) = next(iter(self._buckets.items()))
            if now - counted < self._refill_seconds:
                return
            del self._buckets[buyer]
