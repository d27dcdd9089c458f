"""The rules of the auth service, without I/O: the sign-in limits (what they count a client as, how long a
throttled client waits) and what a profile update changes. The counting itself is one statement in
``queries.py``, so that every replica enforces the same limits."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import timedelta

from ticketing_auth.config import Settings

# One holder of an IPv6 /64 can use any of its 2^64 addresses: the limits count the network as one client.
IPV6_CLIENT_PREFIX = 64
CLIENT_ADDRESS_MAX_LENGTH = 64  # the column signin_failures.client_address


@dataclass(frozen=True)
class SigninLimit:
    """Within a sliding ``window``: at most ``max_failures`` failed password checks per (email, client address),
    and at most ``max_failures_per_address`` per client address across all emails.

    There is no limit per email alone: it would let anyone lock the owner out. See the README for the trade-off.
    """

    max_failures: int
    max_failures_per_address: int
    window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> SigninLimit:
        return cls(
            settings.signin_max_failures,
            settings.signin_max_failures_per_address,
            timedelta(seconds=settings.signin_window_seconds),
        )


def address_key(client_address: str) -> str:
    """What the limits count a client address as: an IPv4 address itself, an IPv6 address its /64 network,
    anything else (no address) its text, cut to the column's length."""
    try:
        address = ipaddress.ip_address(client_address)
    except ValueError:
        return client_address[:CLIENT_ADDRESS_MAX_LENGTH]
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def retry_after(*, pair_wait: float | None, address_wait: float | None) -> int:
    """The whole seconds a throttled client waits: until every limit it reached lets it in again. A wait is the
    time until the oldest failure that limit counts leaves the window (None: that limit was not reached)."""
    waits = [wait for wait in (pair_wait, address_wait) if wait is not None]
    if not waits:
        raise ValueError("a client is throttled only by a limit it reached")
    return math.ceil(max(waits))


def email_change(current: str, requested: str | None) -> str | None:
    """The new email an update sets: None when none was asked for, or it is the current one (no change)."""
    return requested if requested is not None and requested != current else None
