"""Stripe's test tokens the fake honours, and what each one does when charged."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str
    message: str


@dataclass(frozen=True)
class Card:
    brand: str
    last4: str
    decline: Decline | None = None


TOKENS: dict[str, Card] = {
    "tok_visa": Card("visa", "4242"),
    "tok_visa_debit": Card("visa", "5556"),
    "tok_mastercard": Card("mastercard", "4444"),
    "tok_amex": Card("amex", "8431"),
    "tok_chargeDeclined": Card("visa", "0002", Decline("card_declined", "generic_decline", "Your card was declined.")),
    "tok_chargeDeclinedInsufficientFunds": Card(
        "visa", "9995", Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
    ),
    "tok_chargeDeclinedExpiredCard": Card(
        "visa", "0069", Decline("expired_card", "expired_card", "Your card has expired.")
    ),
    "tok_chargeDeclinedIncorrectCvc": Card(
        "visa", "0127", Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.")
    ),
    "tok_chargeDeclinedProcessingError": Card(
        "visa",
        "0119",
        Decline(
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        ),
    ),
}
