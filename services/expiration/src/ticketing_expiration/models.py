"""Tables of the expiration service."""

from sqlalchemy.orm import DeclarativeBase

from ticketing_common.db import TYPE_ANNOTATION_MAP, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP
