"""What the auth routes accept: one spelling of each email, the bounds of a new password, a profile update that
changes something. Pure validation: no database, no bus (the routes' tests check the answers)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ticketing_auth.domain import email_change
from ticketing_auth.schemas import CredentialsIn, SignUpIn, UpdateUserIn, normalize_email

pytestmark = pytest.mark.unit

PASSWORD = "correct horse battery"


@pytest.mark.parametrize(
    "spelling",
    [" Ada@Example.COM ", "ada@example.com", "\uff41\uff44\uff41@example.com", "ada@\uff45xample.com"],
    ids=["spaces-and-case", "plain", "full-width", "full-width-domain"],
)
def test_every_spelling_of_one_address_is_one_email(spelling: str) -> None:
    assert normalize_email(spelling) == "ada@example.com"


@pytest.mark.parametrize("value", ["nope", "ada@", "@example.com", "", 42, None, ["ada@example.com"]])
def test_anything_but_an_address_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="Email must be valid"):
        normalize_email(value)


@pytest.mark.parametrize("password", ["eight888", "x" * 128, "ünïcødé!"])
def test_a_new_password_has_8_to_128_characters(password: str) -> None:
    body = SignUpIn.model_validate({"email": "ada@example.com", "password": password})

    assert body.password.get_secret_value() == password


@pytest.mark.parametrize("password", ["", "seven77", "x" * 129, 12345678, None])
def test_a_new_password_outside_the_bounds_is_refused(password: Any) -> None:
    with pytest.raises(ValidationError, match="Password must be between 8 and 128 characters"):
        SignUpIn.model_validate({"email": "ada@example.com", "password": password})


def test_signing_in_needs_a_password_of_any_length() -> None:
    body = CredentialsIn.model_validate({"email": " ADA@example.com", "password": "short"})

    assert (body.email, body.password.get_secret_value()) == ("ada@example.com", "short")
    with pytest.raises(ValidationError, match="Password is required"):
        CredentialsIn.model_validate({"email": "ada@example.com", "password": ""})


def test_an_update_needs_the_current_password_and_something_to_change() -> None:
    with pytest.raises(ValidationError, match="Provide a new email or a new password"):
        UpdateUserIn.model_validate({"currentPassword": PASSWORD})
    with pytest.raises(ValidationError, match="Current password is required"):
        UpdateUserIn.model_validate({"currentPassword": "", "email": "new@example.com"})


def test_an_update_changes_the_email_only_to_another_one() -> None:
    assert email_change("ada@example.com", "new@example.com") == "new@example.com"
    assert email_change("ada@example.com", "ada@example.com") is None
    assert email_change("ada@example.com", None) is None
