"""The arithmetic of the sign-in limits: what they count a client as, how long a throttled client waits, and the
settings they accept. Pure functions: no database, no bus."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from ticketing_auth.config import Settings
from ticketing_auth.domain import SigninLimit, address_key, retry_after
from ticketing_common.testing import session_settings

pytestmark = pytest.mark.unit


def test_an_ipv4_client_is_counted_as_its_address() -> None:
    assert address_key("203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize("address", ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:DB8:1:2::abcd"])
def test_an_ipv6_client_is_counted_as_its_64_network_whichever_address_of_it_it_uses(address: str) -> None:
    assert address_key(address) == "2001:db8:1:2::/64"


def test_neighbouring_ipv6_networks_are_counted_apart() -> None:
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")


def test_something_that_is_no_address_is_counted_as_its_text_cut_to_the_columns_length() -> None:
    assert address_key("unknown") == "unknown"
    assert address_key("x" * 100) == "x" * 64


def test_a_client_throttled_by_one_limit_waits_until_that_limit_lets_it_in_in_whole_seconds() -> None:
    assert retry_after(pair_wait=12.1, address_wait=None) == 13
    assert retry_after(pair_wait=None, address_wait=0.2) == 1


def test_a_client_throttled_by_both_limits_waits_for_the_later() -> None:
    assert retry_after(pair_wait=30.0, address_wait=600.5) == 601
    assert retry_after(pair_wait=600.5, address_wait=30.0) == 601


def test_a_client_that_reached_no_limit_has_no_wait() -> None:
    with pytest.raises(ValueError, match="only by a limit it reached"):
        retry_after(pair_wait=None, address_wait=None)


def test_the_limits_come_from_the_settings_with_their_defaults() -> None:
    limit = SigninLimit.from_settings(Settings(**session_settings()))

    assert limit == SigninLimit(max_failures=10, max_failures_per_address=50, window=timedelta(minutes=15))


def test_settings_refuse_a_limit_per_address_below_the_limit_per_email_and_address() -> None:
    with pytest.raises(ValidationError, match="SIGNIN_MAX_FAILURES_PER_ADDRESS must be at least"):
        Settings(**session_settings(), signin_max_failures=10, signin_max_failures_per_address=5)


@pytest.mark.parametrize("value", ["0.0.0.0/0", "::/0", "*", "10.0.0.0/8, gateway"])
def test_settings_refuse_trusted_proxies_that_trust_everyone_or_are_not_addresses(value: str) -> None:
    with pytest.raises(ValidationError, match=r"is not an IP address|trusts every address"):
        Settings(**session_settings(), trusted_proxies=value)
