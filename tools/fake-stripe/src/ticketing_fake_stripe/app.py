"""The fake Stripe API: PaymentIntents (confirmed with a test token) and the charges they make, behind Stripe's
authentication, error shapes and idempotency layer. One process, state in memory.

Idempotency follows Stripe's documentation: a POST's ``Idempotency-Key`` (scoped to the API key) saves the status
and body of the first request once its execution begins, declines included; the same key with the same endpoint
and parameters replays that answer with ``Idempotent-Replayed: true``; with other parameters it is a 400
``idempotency_error``; while the first is still executing, another request with the key gets 409
``idempotency_key_in_use``. Failed authentication, invalid parameters and conflicts save nothing.

Tests steer it through ``/_fake/*``: reset, slow execution down, make the next requests fail (before executing:
nothing happens; or after: the work is done and saved but the answer is lost) and read the request log.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ticketing_fake_stripe.cards import TOKENS, Card
from ticketing_fake_stripe.errors import ApiError, invalid_request, missing_param, no_such, unknown_error
from ticketing_fake_stripe.forms import FormError, decode

API_VERSION = "2025-09-30.clover"
MAX_AMOUNT = 99_999_999
MAX_KEY_LENGTH = 255
REQUEST_LOG_SIZE = 1000
PAYMENT_INTENT_PARAMS = {
    "amount",
    "currency",
    "confirm",
    "description",
    "error_on_requires_action",
    "expand",
    "metadata",
    "payment_method_data",
    "payment_method_types",
    "receipt_email",
}

Json = dict[str, Any]
Operation = Callable[[], tuple[int, Json]]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class Saved:
    """What an idempotency key remembers: the request it was first used with and, once done, its answer."""

    method: str
    path: str
    fingerprint: str
    request_id: str
    status: int | None = None  # None while the first request is still executing
    body: Json | None = None


@dataclass
class Outage:
    remaining: int
    phase: Literal["before", "after"]
    status: int


@dataclass
class State:
    payment_intents: dict[str, Json] = field(default_factory=dict)
    charges: dict[str, Json] = field(default_factory=dict)
    refunds: dict[str, Json] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], Saved] = field(default_factory=dict)
    requests: deque[Json] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE))
    outage: Outage | None = None
    delay_seconds: float = 0.0


class FakeStripe:
    """The in-memory Stripe account (every ``sk_test_`` key shares it; idempotency keys are per API key)."""

    def __init__(self) -> None:
        self.state = State()

    def reset(self) -> None:
        self.state = State()

    # -- the request pipeline ----------------------------------------------------------------------------------

    async def serve(self, request: Request, path: str) -> Response:
        """Answer one ``/v1`` request as Stripe would, honouring the configured outage and delay."""
        state = self.state
        request_id = new_id("req")
        method = request.method
        key = request.headers.get("idempotency-key") if method == "POST" else None
        entry: Json = {"requestId": request_id, "method": method, "path": f"/v1/{path}", "idempotencyKey": key}
        replayed_from: str | None = None
        try:
            if self._take_outage("before"):
                raise unknown_error(state.outage.status if state.outage else 500)
            api_key = _authenticate(request)
            params = await _params(request)
            entry["params"] = params
            operation_for = self._route(method, path)
            if key is not None:
                if len(key) > MAX_KEY_LENGTH:
                    raise invalid_request(f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters long.")
                fingerprint = json.dumps({"method": method, "path": path, "params": params}, sort_keys=True)
                saved = state.idempotency.get((api_key, key))
                if saved is not None:
                    status, body, replayed_from = _replay(saved, key, fingerprint)
                else:
                    operation = operation_for(params)  # validation errors are raised here and not saved
                    saved = Saved(method, path, fingerprint, request_id)
                    state.idempotency[(api_key, key)] = saved
                    try:
                        status, body = await self._execute(operation)
                    except BaseException:
                        del state.idempotency[(api_key, key)]  # the fake itself broke: nothing was promised
                        raise
                    saved.status, saved.body = status, body
            else:
                status, body = await self._execute(operation_for(params))
        except ApiError as exc:
            status, body = exc.status, exc.body()
            headers = exc.headers
        else:
            headers = {}
        if self._take_outage("after"):
            # The work is done (and saved under the key) but this answer never reaches the client intact.
            error = unknown_error(state.outage.status if state.outage else 500)
            status, body, headers = error.status, error.body(), {}
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("stripe-version", API_VERSION),
            **({"Idempotency-Key": key} if key else {}),
            **({"Idempotent-Replayed": "true", "Original-Request": replayed_from} if replayed_from else {}),
            **headers,
        }
        entry.update(status=status, replayed=replayed_from is not None, time=time.time())
        state.requests.append(entry)
        return JSONResponse(body, status_code=status, headers=headers)

    def _take_outage(self, phase: str) -> bool:
        outage = self.state.outage
        if outage is None or outage.phase != phase or outage.remaining <= 0:
            return False
        outage.remaining -= 1
        return True

    async def _execute(self, operation: Operation) -> tuple[int, Json]:
        if self.state.delay_seconds > 0:
            await asyncio.sleep(self.state.delay_seconds)
        try:
            return operation()
        except ApiError as exc:
            return exc.status, exc.body()

    def _route(self, method: str, path: str) -> Callable[[Json], Operation]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["payment_intents"]:
            return self._create_payment_intent
        if method == "GET" and parts == ["payment_intents"]:
            return lambda params: lambda: (200, self._list("payment_intents", self.state.payment_intents, params))
        if method == "GET" and len(parts) == 2 and parts[0] == "payment_intents":
            return lambda _: lambda: (200, self._get("payment_intent", self.state.payment_intents, parts[1]))
        if method == "GET" and parts == ["charges"]:
            return lambda params: lambda: (200, self._list("charges", self.state.charges, params))
        if method == "GET" and len(parts) == 2 and parts[0] == "charges":
            return lambda _: lambda: (200, self._get("charge", self.state.charges, parts[1]))
        if method == "POST" and parts == ["refunds"]:
            return self._create_refund
        if method == "GET" and parts == ["refunds"]:
            return lambda params: lambda: (200, self._list("refunds", self.state.refunds, params))
        raise ApiError(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({method}: /v1/{path}). This fake implements PaymentIntents, charges and "
            "refunds only.",
        )

    # -- resources ---------------------------------------------------------------------------------------------

    def _get(self, kind: str, objects: dict[str, Json], object_id: str) -> Json:
        found = objects.get(object_id)
        if found is None:
            raise no_such(kind, object_id)
        return found

    def _list(self, name: str, objects: dict[str, Json], params: Json) -> Json:
        limit = _integer(params.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise invalid_request("This value must be between 1 and 100.", param="limit")
        items = list(reversed(objects.values()))  # newest first, as Stripe lists
        if "payment_intent" in params:
            items = [i for i in items if i.get("payment_intent") == params["payment_intent"]]
        if "starting_after" in params:
            ids = [i["id"] for i in items]
            if params["starting_after"] not in ids:
                raise no_such("object", str(params["starting_after"]), param="starting_after")
            items = items[ids.index(params["starting_after"]) + 1 :]
        return {"object": "list", "url": f"/v1/{name}", "has_more": len(items) > limit, "data": items[:limit]}

    def _create_payment_intent(self, params: Json) -> Operation:
        """Validate (errors here are not saved under the idempotency key), then return the work to do."""
        unknown = sorted(set(params) - PAYMENT_INTENT_PARAMS)
        if unknown:
            raise invalid_request(f"Received unknown parameter: {unknown[0]}", param=unknown[0])
        if "amount" not in params:
            raise missing_param("amount")
        amount = _integer(params["amount"], "amount")
        if amount < 1:
            raise invalid_request("This value must be greater than or equal to 1.", param="amount")
        if amount > MAX_AMOUNT:
            raise invalid_request("Amount must be no more than $999,999.99", param="amount", code="amount_too_large")
        if "currency" not in params:
            raise missing_param("currency")
        currency = str(params["currency"]).lower()
        if len(currency) != 3 or not currency.isalpha():
            raise invalid_request(f"Invalid currency: {params['currency']}.", param="currency")
        confirm = _boolean(params.get("confirm", "false"), "confirm")
        _boolean(params.get("error_on_requires_action", "false"), "error_on_requires_action")
        metadata = params.get("metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise invalid_request("Invalid metadata: must be a hash of strings.", param="metadata")
        types = params.get("payment_method_types", ["card"])
        if types != ["card"]:
            raise invalid_request(
                "This fake supports payment_method_types of [card] only.", param="payment_method_types"
            )
        receipt_email = params.get("receipt_email")
        if receipt_email is not None and (not isinstance(receipt_email, str) or "@" not in receipt_email):
            raise invalid_request(
                f"Invalid email address: {receipt_email}", param="receipt_email", code="email_invalid"
            )
        token = _token(params.get("payment_method_data"))
        if confirm and token is None:
            raise invalid_request(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                param="payment_method",
                code="payment_intent_unexpected_state",
            )

        def create() -> tuple[int, Json]:
            card = None
            if confirm and token is not None:
                card = TOKENS.get(token)
                if card is None:
                    raise no_such("token", token, param="payment_method_data[card][token]")
            intent: Json = {
                "id": new_id("pi"),
                "object": "payment_intent",
                "amount": amount,
                "amount_received": 0,
                "currency": currency,
                "capture_method": "automatic",
                "confirmation_method": "automatic",
                "created": int(time.time()),
                "description": params.get("description"),
                "last_payment_error": None,
                "latest_charge": None,
                "livemode": False,
                "metadata": metadata,
                "payment_method": None,
                "payment_method_types": ["card"],
                "receipt_email": receipt_email,
                "status": "requires_payment_method" if token is None else "requires_confirmation",
            }
            intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
            self.state.payment_intents[intent["id"]] = intent
            if card is not None:
                self._confirm(intent, card)
            return 200, intent

        return create

    def _create_refund(self, params: Json) -> Operation:
        """A full refund of a succeeded PaymentIntent's charge (``payment_intent``; ``reason``, ``metadata``)."""
        unknown = sorted(set(params) - {"payment_intent", "reason", "metadata"})
        if unknown:
            raise invalid_request(f"Received unknown parameter: {unknown[0]}", param=unknown[0])
        if "payment_intent" not in params:
            raise missing_param("payment_intent")
        intent_id = str(params["payment_intent"])
        reason = params.get("reason")
        if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
            raise invalid_request(f"Invalid reason: {reason}", param="reason")
        metadata = params.get("metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise invalid_request("Invalid metadata: must be a hash of strings.", param="metadata")

        def create() -> tuple[int, Json]:
            intent = self._get("payment_intent", self.state.payment_intents, intent_id)
            if intent["status"] != "succeeded" or intent["latest_charge"] is None:
                raise invalid_request(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                    param="payment_intent",
                    code="charge_not_refundable",
                )
            charge = self.state.charges[intent["latest_charge"]]
            if charge["refunded"]:
                raise invalid_request(
                    f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
                )
            refund: Json = {
                "id": new_id("re"),
                "object": "refund",
                "amount": charge["amount"],
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "metadata": metadata,
                "payment_intent": intent_id,
                "reason": reason,
                "status": "succeeded",
            }
            charge["amount_refunded"] = charge["amount"]
            charge["refunded"] = True
            self.state.refunds[refund["id"]] = refund
            return 200, refund

        return create

    def _confirm(self, intent: Json, card: Card) -> None:
        payment_method = _payment_method(card)
        charge = self._charge(intent, card, payment_method["id"])
        intent["payment_method"] = payment_method["id"]
        intent["latest_charge"] = charge["id"]
        if card.decline is None:
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            return
        decline = card.decline
        error = ApiError(
            402,
            "card_error",
            decline.message,
            code=decline.code,
            extra={
                "decline_code": decline.decline_code,
                "charge": charge["id"],
                "payment_method": payment_method,
            },
        )
        intent["status"] = "requires_payment_method"
        intent["payment_method"] = None
        intent["last_payment_error"] = error.body()["error"]
        error.extra["payment_intent"] = intent
        raise error

    def _charge(self, intent: Json, card: Card, payment_method_id: str) -> Json:
        decline = card.decline
        ok = decline is None
        charge: Json = {
            "id": new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if ok else 0,
            "amount_refunded": 0,
            "captured": ok,
            "created": int(time.time()),
            "currency": intent["currency"],
            "description": intent["description"],
            "failure_code": decline.code if decline else None,
            "failure_message": decline.message if decline else None,
            "livemode": False,
            "metadata": {},
            "outcome": {
                "network_status": "approved_by_network" if ok else "declined_by_network",
                "reason": decline.decline_code if decline else None,
                "type": "authorized" if ok else "issuer_declined",
            },
            "paid": ok,
            "payment_intent": intent["id"],
            "payment_method": payment_method_id,
            "payment_method_details": {"type": "card", "card": {"brand": card.brand, "last4": card.last4}},
            "receipt_email": intent["receipt_email"],
            "refunded": False,
            "status": "succeeded" if ok else "failed",
        }
        self.state.charges[charge["id"]] = charge
        return charge


def _replay(saved: Saved, key: str, fingerprint: str) -> tuple[int, Json, str]:
    if saved.status is None or saved.body is None:
        raise ApiError(
            409,
            "invalid_request_error",
            f"There is currently another in-progress request using this Stripe API key and idempotency key "
            f"'{key}'. Please try again later.",
            code="idempotency_key_in_use",
            headers={"Stripe-Should-Retry": "true"},
        )
    if saved.fingerprint != fingerprint:
        raise ApiError(
            400,
            "idempotency_error",
            f"Keys for idempotent requests can only be used with the same parameters they were first used with. "
            f"Try using a key other than '{key}' if you meant to execute a different request.",
        )
    return saved.status, saved.body, saved.request_id


def _authenticate(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not key or scheme.lower() != "bearer":
        raise ApiError(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if not key.startswith("sk_test_"):
        shown = f"{key[:8]}{'*' * max(0, len(key) - 12)}{key[-4:]}" if len(key) > 12 else key
        raise ApiError(
            401,
            "invalid_request_error",
            f"Invalid API Key provided: {shown}",
            code="api_key_invalid",
        )
    return key


async def _params(request: Request) -> Json:
    body = await request.body() if request.method == "POST" else request.url.query.encode()
    raw = body.decode("utf-8", errors="replace")
    try:
        return decode(parse_qsl(raw, keep_blank_values=True))
    except FormError as exc:
        raise invalid_request(f"Invalid parameter name: {exc}") from None


def _integer(value: Any, param: str) -> int:
    if not isinstance(value, str) or not value.lstrip("-").isdigit():
        raise invalid_request(f"Invalid integer: {value}", param=param)
    return int(value)


def _boolean(value: Any, param: str) -> bool:
    if value not in ("true", "false"):
        raise invalid_request(f"Invalid boolean: {value}", param=param)
    return bool(value == "true")


def _token(data: Any) -> str | None:
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("type") != "card":
        raise invalid_request("This fake supports payment_method_data[type]=card only.", param="payment_method_data")
    card = data.get("card")
    if not isinstance(card, dict) or not isinstance(card.get("token"), str) or not card["token"]:
        raise missing_param("payment_method_data[card][token]")
    return str(card["token"])


def _payment_method(card: Card) -> Json:
    return {
        "id": new_id("pm"),
        "object": "payment_method",
        "type": "card",
        "card": {"brand": card.brand, "last4": card.last4, "exp_month": 12, "exp_year": 2034},
        "livemode": False,
    }


class OutageIn(BaseModel):
    count: int = Field(default=1, ge=0)
    phase: Literal["before", "after"] = "before"
    status: int = Field(default=500, ge=500, le=599)


class DelayIn(BaseModel):
    seconds: float = Field(ge=0, le=60)


def create_app(fake: FakeStripe | None = None) -> FastAPI:
    """The fake as an ASGI app; ``fake`` (its state) is exposed for in-process tests."""
    stripe = fake or FakeStripe()
    app = FastAPI(title="fake stripe", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = stripe

    @app.api_route("/v1/{path:path}", methods=["GET", "POST"])
    async def api(request: Request, path: str) -> Response:
        return await stripe.serve(request, path)

    @app.get("/_fake/health")
    async def health() -> Json:
        return {"status": "ok"}

    @app.post("/_fake/reset")
    async def reset() -> Json:
        stripe.reset()
        return {"status": "reset"}

    @app.post("/_fake/outage")
    async def outage(body: OutageIn) -> Json:
        """The next ``count`` API requests fail with ``status``: ``before`` doing anything, or ``after`` the work
        is done and saved (a lost answer)."""
        stripe.state.outage = Outage(body.count, body.phase, body.status)
        return body.model_dump()

    @app.post("/_fake/delay")
    async def delay(body: DelayIn) -> Json:
        """Every API request then takes this long to execute (to make concurrent requests overlap)."""
        stripe.state.delay_seconds = body.seconds
        return body.model_dump()

    @app.get("/_fake/requests")
    async def requests() -> list[Json]:
        """Every API request seen since the last reset, oldest first."""
        return list(stripe.state.requests)

    return app
