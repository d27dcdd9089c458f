"""Tables of the auth service: users, and the failed sign-in attempts the rate limit counts."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Identity, Index, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common.db import TYPE_ANNOTATION_MAP, new_id, service_metadata

EMAIL_MAX_LENGTH = 320
CLIENT_ADDRESS_MAX_LENGTH = 64


class Base(DeclarativeBase):
    metadata = service_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class User(Base):
    """A user; ``email`` is stored normalised (trimmed, lower-cased) and unique."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SigninFailure(Base):
    """One failed (or in-flight) password check for a normalised email from a client address (its rate-limit key,
    see ``service.address_key``); rows older than the window are dead."""

    __tablename__ = "signin_failures"
    # Every count is of one address's rows, and an address has at most its limit's worth in the window.
    __table_args__ = (Index("ix_signin_failures_client_address_failed_at", "client_address", "failed_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    client_address: Mapped[str] = mapped_column(String(CLIENT_ADDRESS_MAX_LENGTH))
    failed_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


USERS_EMAIL_UNIQUE = "uq_users_email"
