"""Charging a card through Stripe with the official ``stripe`` library (async, over httpx).

A charge is one PaymentIntent created and confirmed in a single call with the card token the client got from
Stripe.js (``payment_method_data[card][token]``), the PaymentIntents API being what Stripe maintains (the library
marks the older Charges API deprecated). Stripe's answers are turned into a few outcomes the use case can act on:
a charge, or one of the exceptions below.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import stripe

from ticketing_payments.config import Settings

if TYPE_CHECKING:
    from stripe.params import PaymentIntentCreateParams

logger = logging.getLogger("ticketing.payments.stripe")


@dataclass(frozen=True)
class Charge:
    stripe_id: str
    amount: int
    currency: str


class CardDeclined(Exception):
    """Stripe executed the charge and the card was declined; ``message`` is Stripe's, safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChargeRefused(Exception):
    """Stripe refused the request itself (e.g. an unknown token); nothing was charged."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class AttemptInDoubt(Exception):
    """The idempotency key was first used with other parameters (another card or email), by an attempt whose
    outcome we never learnt; it may have charged, so nothing new may run under another key."""


class ProviderUnavailable(Exception):
    """Stripe could not be reached or failed; the outcome is unknown, retrying with the same key is safe."""


class StripeGateway:
    """One Stripe client per process; close it on shutdown."""

    def __init__(self, settings: Settings) -> None:
        self._http = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds)
        self._client = stripe.StripeClient(
            settings.stripe_key or "sk_missing",  # the CLI refuses to serve without a key; tests always set one
            http_client=self._http,
            base_addresses={"api": settings.stripe_api_base} if settings.stripe_api_base else None,
            # The library retries connection errors, 409 and 5xx with the same idempotency key, with backoff.
            max_network_retries=settings.stripe_max_network_retries,
        )

    async def close(self) -> None:
        await self._http.close_async()

    async def charge(
        self,
        *,
        amount: int,
        currency: str,
        token: str,
        receipt_email: str,
        order_id: uuid.UUID,
        idempotency_key: str,
    ) -> Charge:
        """Charge ``amount`` (in the currency's smallest unit) to the card behind ``token``, once per key."""
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "confirm": True,
            "payment_method_types": ["card"],
            "payment_method_data": {"type": "card", "card": {"token": token}},
            # No 3-D Secure round trip exists in this flow: fail instead of leaving the intent waiting for one.
            "error_on_requires_action": True,
            "receipt_email": receipt_email,
            "description": f"Order {order_id}",
            "metadata": {"order_id": str(order_id)},
        }
        try:
            intent = await self._client.v1.payment_intents.create_async(
                # The typed params omit card[token] (a legacy-token path Stripe still accepts for confirmation).
                cast("PaymentIntentCreateParams", params),
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            raise CardDeclined(exc.user_message or "Your card was declined.") from exc
        except stripe.IdempotencyError as exc:
            raise AttemptInDoubt(str(exc.user_message)) from exc
        except stripe.InvalidRequestError as exc:
            raise ChargeRefused(exc.user_message or "Payment refused", exc.param) from exc
        except stripe.StripeError as exc:
            # Connection errors, timeouts, 5xx, 409 and 429 after the library's retries, or our own bad key.
            log = (
                logger.error if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError) else logger.warning
            )
            log(
                "stripe unavailable",
                extra={"order_id": str(order_id), "error": repr(exc), "stripe_request_id": exc.request_id},
            )
            raise ProviderUnavailable() from exc
        if intent.status != "succeeded":
            # Card payments settle synchronously; anything else (e.g. "processing") is not a payment yet. The
            # next retry reuses the key, so it can never turn into a second charge.
            logger.error("payment intent not succeeded", extra={"order_id": str(order_id), "status": intent.status})
            raise ProviderUnavailable()
        return Charge(stripe_id=intent.id, amount=intent.amount, currency=intent.currency)

    async def refund(self, *, payment_intent: str, order_id: uuid.UUID, idempotency_key: str) -> str | None:
        """Refund a succeeded PaymentIntent in full, once per key; returns the refund's id (None when Stripe says
        it was refunded already, e.g. by a person in the dashboard)."""
        try:
            refund = await self._client.v1.refunds.create_async(
                {
                    "payment_intent": payment_intent,
                    "reason": "requested_by_customer",
                    "metadata": {"order_id": str(order_id)},
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "charge_already_refunded":
                return None
            raise
        except stripe.StripeError as exc:
            logger.warning(
                "stripe unavailable for a refund",
                extra={"order_id": str(order_id), "error": repr(exc), "stripe_request_id": exc.request_id},
            )
            raise ProviderUnavailable() from exc
        return str(refund.id)
