"""The payments service's settings refuse what cannot work or would leak a secret, with a message naming it."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from ticketing_common.testing import session_settings
from ticketing_payments.config import Settings

pytestmark = pytest.mark.unit


def make(**values: str) -> Settings:
    return Settings(**session_settings(), **values)  # type: ignore[arg-type]


def test_defaults_talk_to_stripe_itself_in_usd() -> None:
    settings = make(stripe_key="sk_live_0123456789")

    assert settings.stripe_api_base is None
    assert settings.currency == "usd"
    assert settings.stripe_max_network_retries == 2
    assert "sk_live" not in repr(settings)


def test_the_api_base_and_currency_are_normalised() -> None:
    settings = make(stripe_key="sk_test_x", stripe_api_base="http://127.0.0.1:12111/", currency=" EUR ")

    assert settings.stripe_api_base == "http://127.0.0.1:12111"
    assert settings.currency == "eur"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"stripe_key": "pk_test_publishable"}, "STRIPE_KEY must be a Stripe secret key"),
        (
            {"stripe_key": "sk_live_real_money", "stripe_api_base": "http://127.0.0.1:12111"},
            "STRIPE_KEY must be a test key",
        ),
        ({"stripe_key": "sk_test_x", "stripe_api_base": "ftp://stripe"}, "STRIPE_API_BASE must be an http(s) URL"),
        ({"stripe_key": "sk_test_x", "currency": "dollars"}, "CURRENCY must be a three-letter ISO currency code"),
    ],
)
def test_refuses_settings_that_cannot_work(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        make(**values)


def test_a_live_key_may_name_stripes_own_api_base() -> None:
    assert make(stripe_key="sk_live_x", stripe_api_base="https://api.stripe.com").stripe_key == "sk_live_x"
