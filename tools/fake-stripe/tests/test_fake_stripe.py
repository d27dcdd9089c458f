"""The fake Stripe API behaves like the part of Stripe the payments service relies on: test tokens, error shapes,
and idempotency keys as Stripe documents them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from ticketing_common.embedded import free_port, wait_for_port
from ticketing_fake_stripe.app import create_app
from ticketing_fake_stripe.forms import FormError, decode

KEY = "sk_test_fake_stripe_tests"

# stripe's HTTPXClient hands httpx the encoded form as `data=`; httpx prefers `content=` but sends the same bytes.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        yield client


def intent_form(card: str | None = "tok_visa", **overrides: str) -> dict[str, str]:
    form = {
        "amount": "1999",
        "currency": "usd",
        "confirm": "true",
        "payment_method_types[0]": "card",
        "payment_method_data[type]": "card",
        "receipt_email": "buyer@example.com",
        "metadata[order_id]": "order-1",
        **overrides,
    }
    if card is not None:
        form["payment_method_data[card][token]"] = card
    return form


async def create_intent(
    api: httpx.AsyncClient,
    *,
    card: str | None = "tok_visa",
    key: str | None = None,
    api_key: str = KEY,
    **overrides: str,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api_key}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.post("/v1/payment_intents", data=intent_form(card, **overrides), headers=headers)


async def charges(api: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    response = await api.get(
        "/v1/charges", params={"limit": "100", **query}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def test_requests_without_a_test_secret_key_get_401(api: httpx.AsyncClient) -> None:
    missing = await api.post("/v1/payment_intents", data=intent_form())
    live = await create_intent(api, api_key="sk_live_0123456789abcdef")

    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "You did not provide an API key" in missing.json()["error"]["message"]
    assert live.status_code == 401
    assert live.json()["error"]["code"] == "api_key_invalid"
    assert "0123456789abcdef" not in live.json()["error"]["message"]  # a key is never echoed in full
    assert await charges(api) == []


async def test_tok_visa_succeeds_with_one_succeeded_charge(api: httpx.AsyncClient) -> None:
    response = await create_intent(api)

    assert response.status_code == 200
    intent = response.json()
    assert response.headers["request-id"].startswith("req_")
    assert intent["object"] == "payment_intent"
    assert intent["id"].startswith("pi_")
    assert (intent["status"], intent["amount"], intent["amount_received"], intent["currency"]) == (
        "succeeded",
        1999,
        1999,
        "usd",
    )
    assert intent["metadata"] == {"order_id": "order-1"}
    assert intent["receipt_email"] == "buyer@example.com"
    [charge] = await charges(api)
    assert charge["id"] == intent["latest_charge"]
    assert (charge["status"], charge["paid"], charge["amount"], charge["payment_intent"]) == (
        "succeeded",
        True,
        1999,
        intent["id"],
    )
    assert charge["payment_method_details"]["card"] == {"brand": "visa", "last4": "4242"}


async def test_tok_charge_declined_is_a_402_card_error_with_stripes_message(api: httpx.AsyncClient) -> None:
    response = await create_intent(api, card="tok_chargeDeclined")

    assert response.status_code == 402
    error = response.json()["error"]
    assert error["type"] == "card_error"
    assert error["code"] == "card_declined"
    assert error["decline_code"] == "generic_decline"
    assert error["message"] == "Your card was declined."
    assert error["payment_intent"]["status"] == "requires_payment_method"
    [charge] = await charges(api)
    assert (charge["id"], charge["status"], charge["paid"]) == (error["charge"], "failed", False)
    assert charge["failure_code"] == "card_declined"


async def test_the_same_key_and_parameters_replay_the_saved_answer(api: httpx.AsyncClient) -> None:
    first = await create_intent(api, key="order-1-attempt-0")
    again = await create_intent(api, key="order-1-attempt-0")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["original-request"] == first.headers["request-id"]
    assert again.headers["request-id"] != first.headers["request-id"]
    assert len(await charges(api)) == 1


async def test_a_decline_is_saved_and_replayed_too(api: httpx.AsyncClient) -> None:
    first = await create_intent(api, card="tok_chargeDeclined", key="k")
    again = await create_intent(api, card="tok_chargeDeclined", key="k")

    assert first.status_code == again.status_code == 402
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await charges(api)) == 1


async def test_the_same_key_with_other_parameters_is_an_idempotency_error(api: httpx.AsyncClient) -> None:
    await create_intent(api, card="tok_chargeDeclined", key="k")
    other = await create_intent(api, card="tok_visa", key="k")

    assert other.status_code == 400
    error = other.json()["error"]
    assert error["type"] == "idempotency_error"
    assert "can only be used with the same parameters" in error["message"]
    assert [c["status"] for c in await charges(api)] == ["failed"]


async def test_idempotency_keys_are_scoped_to_the_api_key(api: httpx.AsyncClient) -> None:
    await create_intent(api, key="shared")
    other_account = await create_intent(api, key="shared", api_key="sk_test_another_account")

    assert other_account.status_code == 200
    assert "idempotent-replayed" not in other_account.headers
    assert len(await charges(api)) == 2


async def test_concurrent_requests_with_one_key_execute_once_and_the_other_gets_409(api: httpx.AsyncClient) -> None:
    await api.post("/_fake/delay", json={"seconds": 0.3})

    first, second = await asyncio.gather(create_intent(api, key="k"), create_intent(api, key="k"))

    assert sorted([first.status_code, second.status_code]) == [200, 409]
    conflict = first if first.status_code == 409 else second
    assert conflict.json()["error"]["code"] == "idempotency_key_in_use"
    assert conflict.headers["stripe-should-retry"] == "true"
    assert len(await charges(api)) == 1
    # Once the first is done, the key replays it.
    later = await create_intent(api, key="k")
    assert later.headers["idempotent-replayed"] == "true"


async def test_invalid_parameters_are_not_saved_under_the_key(api: httpx.AsyncClient) -> None:
    invalid = await create_intent(api, key="k", amount="abc")
    valid = await create_intent(api, key="k")

    assert invalid.status_code == 400
    assert invalid.json()["error"] == {
        "type": "invalid_request_error",
        "message": "Invalid integer: abc",
        "param": "amount",
    }
    assert valid.status_code == 200
    assert "idempotent-replayed" not in valid.headers


@pytest.mark.parametrize(
    ("form", "param", "message"),
    [
        ({"amount": "0"}, "amount", "This value must be greater than or equal to 1."),
        ({"currency": "dollars"}, "currency", "Invalid currency: dollars."),
        ({"shipping[name]": "x"}, "shipping", "Received unknown parameter: shipping"),
        ({"receipt_email": "nobody"}, "receipt_email", "Invalid email address: nobody"),
    ],
)
async def test_invalid_parameters_are_400s_naming_the_param(
    api: httpx.AsyncClient, form: dict[str, str], param: str, message: str
) -> None:
    response = await create_intent(api, **form)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["message"] == message
    assert await charges(api) == []


async def test_an_unknown_token_is_a_resource_missing_error(api: httpx.AsyncClient) -> None:
    response = await create_intent(api, card="tok_nonsense")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "resource_missing"
    assert response.json()["error"]["message"] == "No such token: 'tok_nonsense'"
    assert await charges(api) == []


async def test_an_outage_before_execution_does_nothing_and_saves_nothing(api: httpx.AsyncClient) -> None:
    await api.post("/_fake/outage", json={"count": 2, "phase": "before"})

    failed = [await create_intent(api, key="k") for _ in range(2)]
    recovered = await create_intent(api, key="k")

    assert [r.status_code for r in failed] == [500, 500]
    assert failed[0].json()["error"]["type"] == "api_error"
    assert recovered.status_code == 200
    assert "idempotent-replayed" not in recovered.headers
    assert len(await charges(api)) == 1


async def test_an_answer_lost_after_execution_is_replayed_on_retry(api: httpx.AsyncClient) -> None:
    await api.post("/_fake/outage", json={"count": 1, "phase": "after"})

    lost = await create_intent(api, key="k")
    retried = await create_intent(api, key="k")

    assert lost.status_code == 500
    assert retried.status_code == 200
    assert retried.headers["idempotent-replayed"] == "true"
    assert len(await charges(api)) == 1
    log = [e for e in (await api.get("/_fake/requests")).json() if e["method"] == "POST"]
    assert [(e["idempotencyKey"], e["status"], e["replayed"]) for e in log] == [("k", 500, False), ("k", 200, True)]


async def test_charges_are_listed_newest_first_and_filtered_by_payment_intent(api: httpx.AsyncClient) -> None:
    first = (await create_intent(api)).json()
    second = (await create_intent(api, card="tok_mastercard")).json()

    assert [c["payment_intent"] for c in await charges(api)] == [second["id"], first["id"]]
    assert [c["id"] for c in await charges(api, payment_intent=first["id"])] == [first["latest_charge"]]
    one = await api.get(f"/v1/charges/{first['latest_charge']}", headers={"Authorization": f"Bearer {KEY}"})
    assert one.json()["payment_intent"] == first["id"]
    missing = await api.get("/v1/charges/ch_missing", headers={"Authorization": f"Bearer {KEY}"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"


async def test_a_refund_pays_back_a_succeeded_intent_once_and_replays_under_its_key(api: httpx.AsyncClient) -> None:
    intent = (await create_intent(api)).json()
    declined = (await create_intent(api, card="tok_chargeDeclined")).json()["error"]["payment_intent"]
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": "refund-1"}

    refund = await api.post("/v1/refunds", data={"payment_intent": intent["id"]}, headers=headers)
    replay = await api.post("/v1/refunds", data={"payment_intent": intent["id"]}, headers=headers)
    again = await api.post(
        "/v1/refunds", data={"payment_intent": intent["id"]}, headers={"Authorization": f"Bearer {KEY}"}
    )
    not_paid = await api.post(
        "/v1/refunds", data={"payment_intent": declined["id"]}, headers={"Authorization": f"Bearer {KEY}"}
    )

    assert refund.status_code == 200
    assert refund.json()["object"] == "refund"
    assert (refund.json()["amount"], refund.json()["status"]) == (1999, "succeeded")
    assert replay.json()["id"] == refund.json()["id"]
    assert replay.headers["idempotent-replayed"] == "true"
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "charge_already_refunded"
    assert not_paid.status_code == 400
    assert not_paid.json()["error"]["code"] == "charge_not_refundable"
    [charge] = await charges(api, payment_intent=intent["id"])
    assert (charge["refunded"], charge["amount_refunded"]) == (True, 1999)


async def test_reset_forgets_everything(api: httpx.AsyncClient) -> None:
    await create_intent(api, key="k")
    await api.post("/_fake/reset")

    again = await create_intent(api, key="k")

    assert "idempotent-replayed" not in again.headers
    assert len(await charges(api)) == 1


def test_form_decoding_nests_hashes_and_arrays_like_stripe() -> None:
    assert decode(
        [
            ("amount", "1999"),
            ("payment_method_data[card][token]", "tok_visa"),
            ("payment_method_types[0]", "card"),
            ("expand[]", "latest_charge"),
            ("expand[]", "payment_method"),
        ]
    ) == {
        "amount": "1999",
        "payment_method_data": {"card": {"token": "tok_visa"}},
        "payment_method_types": ["card"],
        "expand": ["latest_charge", "payment_method"],
    }
    with pytest.raises(FormError):
        decode([("a", "1"), ("a[b]", "2")])
    with pytest.raises(FormError):
        decode([("a]", "1")])


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """The console script `make up` and the payments tests start, on a free port."""
    port = free_port()
    script = Path(sys.executable).with_name("ticketing-fake-stripe")
    process = subprocess.Popen(
        [str(script)], env={**os.environ, "PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port("127.0.0.1", port, 20, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def test_the_official_stripe_library_speaks_to_the_served_fake(served: str) -> None:
    http = stripe.HTTPXClient()
    client = stripe.StripeClient(KEY, http_client=http, base_addresses={"api": served}, max_network_retries=0)
    params: Any = {
        "amount": 29,
        "currency": "usd",
        "confirm": True,
        "payment_method_types": ["card"],
        "payment_method_data": {"type": "card", "card": {"token": "tok_visa"}},
    }
    try:
        intent = await client.v1.payment_intents.create_async(params, {"idempotency_key": "lib-1"})
        replay = await client.v1.payment_intents.create_async(params, {"idempotency_key": "lib-1"})
        declined = {**params, "payment_method_data": {"type": "card", "card": {"token": "tok_chargeDeclined"}}}
        with pytest.raises(stripe.IdempotencyError):
            await client.v1.payment_intents.create_async(declined, {"idempotency_key": "lib-1"})
        with pytest.raises(stripe.CardError) as card_error:
            await client.v1.payment_intents.create_async(declined, {"idempotency_key": "lib-2"})
        listed = await client.v1.charges.list_async({"payment_intent": intent.id})
    finally:
        await http.close_async()

    assert (intent.status, intent.amount) == ("succeeded", 29)
    assert replay.id == intent.id
    assert card_error.value.user_message == "Your card was declined."
    assert card_error.value.code == "card_declined"
    assert card_error.value.http_status == 402
    assert [c.id for c in listed.data] == [intent.latest_charge]
