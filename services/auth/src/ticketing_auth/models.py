"""Tables of the auth service: users, and the failed sign-in attempts the rate limit counts."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Identity, Index, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ticketing_common.db import TYPE_ANNOTATION_MAP, new_id, service_metadata

EMAIL_MAX_LENGTH = 320


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
    """One failed (or in-flight) sign-in attempt for a normalised email; rows older than the window are dead."""

    __tablename__ = "signin_failures"
    __table_args__ = (Index("ix_signin_failures_email_failed_at", "email", "failed_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    failed_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


USERS_EMAIL_UNIQUE = "uq_users_email"
