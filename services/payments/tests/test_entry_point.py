"""``ticketing-payments serve`` refuses to start without a Stripe key, with a message naming it."""

from __future__ import annotations

from ticketing_common.testing import UNREACHABLE_JWKS_URL, serve_in_a_process


def test_the_service_refuses_to_serve_without_a_stripe_key() -> None:
    result = serve_in_a_process(
        "ticketing_payments",
        without=["STRIPE_"],
        JWKS_URL=UNREACHABLE_JWKS_URL,
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/postgres",
        PORT="1",
    )

    assert result.returncode == 2
    assert "configuration error: STRIPE_KEY: must be set" in result.stderr
