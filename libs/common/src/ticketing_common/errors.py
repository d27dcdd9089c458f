"""The shared error format: every failure answers ``{"errors": [{"message": ..., "field"?: ...}]}``.

Services raise a :class:`CustomError` subclass; :func:`install_error_handlers` turns those, FastAPI's
validation errors, unknown routes, wrong methods and unexpected exceptions into that one shape.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypedDict

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError as FastAPIValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("ticketing.errors")


class ErrorItem(TypedDict, total=False):
    message: str
    field: str


class CustomError(Exception, ABC):
    """Base of every error a service answers on purpose."""

    status_code: int = 500
    headers: dict[str, str] | None = None

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    @abstractmethod
    def serialize(self) -> list[ErrorItem]:
        """The entries of the ``errors`` list."""


class _MessageError(CustomError):
    default_message = "Something went wrong"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)

    def serialize(self) -> list[ErrorItem]:
        return [{"message": self.message}]


class FieldError(CustomError):
    """One message tied to one request field (400)."""

    status_code = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def serialize(self) -> list[ErrorItem]:
        return [{"message": self.message, "field": self.field}]


class RequestValidationError(CustomError):
    """Invalid input: one entry per invalid field, ``field`` named as the client sent it."""

    status_code = 400

    def __init__(self, errors: Sequence[ErrorItem]) -> None:
        super().__init__("Invalid request parameters")
        self.errors = list(errors)

    def serialize(self) -> list[ErrorItem]:
        return self.errors


class BadRequestError(_MessageError):
    status_code = 400
    default_message = "Bad request"


class NotAuthorizedError(_MessageError):
    status_code = 401
    default_message = "Not authorized"


class PaymentRequiredError(_MessageError):
    status_code = 402
    default_message = "Payment required"


class ForbiddenError(_MessageError):
    status_code = 403
    default_message = "Forbidden"


class NotFoundError(_MessageError):
    status_code = 404
    default_message = "Not Found"


class MethodNotAllowedError(_MessageError):
    status_code = 405
    default_message = "Method Not Allowed"


class ConflictError(_MessageError):
    status_code = 409
    default_message = "Conflict"


class PayloadTooLargeError(_MessageError):
    status_code = 413
    default_message = "Request body too large"


class UnsupportedMediaTypeError(_MessageError):
    status_code = 415
    default_message = "Content-Type must be application/json"


class TooManyRequestsError(_MessageError):
    status_code = 429
    default_message = "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, retry_after))}


class DatabaseConnectionError(_MessageError):
    status_code = 503
    default_message = "Error connecting to database"


class ServiceUnavailableError(_MessageError):
    status_code = 503
    default_message = "Service unavailable"


def error_body(errors: Sequence[ErrorItem]) -> dict[str, Any]:
    return {"errors": list(errors)}


def error_response(error: CustomError) -> JSONResponse:
    return JSONResponse(error_body(error.serialize()), status_code=error.status_code, headers=error.headers)


def _field_name(loc: Sequence[Any]) -> str | None:
    """The client's name for a pydantic error location: ``("body", "ticketId")`` -> ``ticketId``."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    # pydantic reports union / function-validator branches as extra path parts; keep real field names only
    parts = [p for p in parts if not p.startswith("function-") and "[" not in p]
    return ".".join(parts) or None


def validation_items(errors: Sequence[Any]) -> list[ErrorItem]:
    """Translate pydantic error dicts into the shared format, one entry per field."""
    items: list[ErrorItem] = []
    seen: set[str | None] = set()
    for err in errors:
        if err.get("type") == "json_invalid":
            return [{"message": "Request body is not valid JSON"}]
        loc = err.get("loc", ())
        field = _field_name(loc)
        if field in seen:
            continue
        seen.add(field)
        ctx = err.get("ctx") or {}
        message = str(ctx["error"]) if isinstance(ctx.get("error"), ValueError) else err.get("msg", "Invalid")
        message = message.removeprefix("Value error, ")
        if err.get("type") == "missing" and field is not None:
            message = f"{field} is required"
        if field is None and err.get("type") in (
            "missing",
            "model_attributes_type",
            "dict_type",
            "model_type",
        ):
            message = "Request body must be a JSON object"
        item: ErrorItem = {"message": message}
        if field is not None:
            item["field"] = field
        items.append(item)
    return items


async def _custom_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CustomError)
    return error_response(exc)


async def _validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FastAPIValidationError)
    return error_response(RequestValidationError(validation_items(exc.errors())))


_HTTP_ERRORS: dict[int, type[_MessageError]] = {
    400: BadRequestError,
    401: NotAuthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
}


async def _http_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_cls = _HTTP_ERRORS.get(exc.status_code)
    if error_cls is not None:
        error: CustomError = error_cls()
    else:
        error = BadRequestError(str(exc.detail)) if exc.status_code < 500 else ServiceUnavailableError()
        error.status_code = exc.status_code
    return error_response(error)


async def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", extra={"path": request.url.path, "method": request.method}, exc_info=exc)
    return JSONResponse(error_body([{"message": "Something went wrong"}]), status_code=500)


class ErrorItemOut(BaseModel):
    """One entry of the shared error format, as the OpenAPI documents describe it."""

    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """The shared error format: ``{"errors": [{"message": ..., "field"?: ...}]}``."""

    errors: list[ErrorItemOut]


ERROR_DESCRIPTIONS = {
    400: "Invalid request (one entry per invalid field)",
    401: "Not signed in",
    402: "Payment declined",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    415: "Content-Type must be application/json",
    429: "Too many requests (see Retry-After)",
    503: "A dependency (database, another service) is unavailable",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer these statuses in the shared error format (OpenAPI)."""
    return {code: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS.get(code, "Error")} for code in codes}


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure of ``app`` answer in the shared error format."""
    app.add_exception_handler(CustomError, _custom_error_handler)
    app.add_exception_handler(FastAPIValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
