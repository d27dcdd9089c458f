"""JSON bodies of the auth routes (camelCase), separate from the tables.

Invalid values answer the messages of the issue with ``field`` set; passwords are ``SecretStr`` so that no
repr, log line or error of these models can show them.
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import SecretStr, field_validator, model_validator

from ticketing_common.schemas import CamelModel, RequestBody

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128

EMAIL_MESSAGE = "Email must be valid"
PASSWORD_MESSAGE = f"Password must be between {PASSWORD_MIN_LENGTH} and {PASSWORD_MAX_LENGTH} characters"


def normalize_email(value: Any) -> str:
    """The address NFKC-normalised, trimmed, checked (syntax only, no DNS) and lower-cased; ValueError if it is
    not one. NFKC first, so look-alike spellings of one address (full-width letters, ligatures, composed or
    decomposed accents) are one account, not several."""
    if not isinstance(value, str):
        raise ValueError(EMAIL_MESSAGE)
    try:
        checked = validate_email(unicodedata.normalize("NFKC", value).strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValueError(EMAIL_MESSAGE) from None
    return checked.normalized.lower()


def _new_password(value: Any) -> Any:
    if not isinstance(value, str) or not PASSWORD_MIN_LENGTH <= len(value) <= PASSWORD_MAX_LENGTH:
        raise ValueError(PASSWORD_MESSAGE)
    return value


def _given_password(value: Any, message: str) -> Any:
    if not isinstance(value, str) or not value:
        raise ValueError(message)
    return value


class SignUpIn(RequestBody):
    """``POST /signup``: the new user's email and password."""

    email: str
    password: SecretStr

    @field_validator("email", mode="before")
    @classmethod
    def _email_valid(cls, value: Any) -> str:
        return normalize_email(value)

    @field_validator("password", mode="before")
    @classmethod
    def _password_valid(cls, value: Any) -> Any:
        return _new_password(value)


class CredentialsIn(RequestBody):
    """``POST /signin``: an email and a password, which need only be given: it is checked against the stored
    hash, not against the rules for new passwords."""

    email: str
    password: SecretStr

    @field_validator("email", mode="before")
    @classmethod
    def _email_valid(cls, value: Any) -> str:
        return normalize_email(value)

    @field_validator("password", mode="before")
    @classmethod
    def _password_given(cls, value: Any) -> Any:
        return _given_password(value, "Password is required")


class UpdateUserIn(RequestBody):
    """``currentPassword`` always; a new ``email`` and/or a new ``password``."""

    current_password: SecretStr
    email: str | None = None
    password: SecretStr | None = None

    @field_validator("current_password", mode="before")
    @classmethod
    def _current_given(cls, value: Any) -> Any:
        return _given_password(value, "Current password is required")

    @field_validator("email", mode="before")
    @classmethod
    def _email_valid(cls, value: Any) -> Any:
        return None if value is None else normalize_email(value)

    @field_validator("password", mode="before")
    @classmethod
    def _password_valid(cls, value: Any) -> Any:
        return None if value is None else _new_password(value)

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdateUserIn:
        if self.email is None and self.password is None:
            raise ValueError("Provide a new email or a new password")
        return self


class UserOut(CamelModel):
    id: uuid.UUID
    email: str


class SessionUserOut(CamelModel):
    """What the session cookie says about its user."""

    id: uuid.UUID
    email: str
    iat: int
    exp: int


class CurrentUserOut(CamelModel):
    current_user: SessionUserOut | None
