"""``ticketing-payments serve`` refuses to start without a Stripe key, with a message naming it."""

from __future__ import annotations

import os
import subprocess
import sys

from ticketing_common.testing import UNREACHABLE_JWKS_URL


def test_the_service_refuses_to_serve_without_a_stripe_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    env.update(JWKS_URL=UNREACHABLE_JWKS_URL, DATABASE_URL="postgresql://nobody@127.0.0.1:1/postgres", PORT="1")

    result = subprocess.run(
        [sys.executable, "-m", "ticketing_payments", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "configuration error: STRIPE_KEY: must be set" in result.stderr
