"""Stripe's error answers: ``{"error": {"type", "message", "code"?, "param"?, ...}}`` with an HTTP status."""

from __future__ import annotations

from typing import Any

DOCS = "https://stripe.com/docs/error-codes"


class ApiError(Exception):
    """An error the fake answers exactly as Stripe shapes it."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"{DOCS}/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request_error", message, param=param, code=code)


def missing_param(param: str) -> ApiError:
    return invalid_request(f"Missing required param: {param}.", param=param, code="parameter_missing")


def no_such(kind: str, object_id: str, *, param: str = "id") -> ApiError:
    return ApiError(
        404 if param == "id" else 400,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def unknown_error(status: int = 500) -> ApiError:
    return ApiError(status, "api_error", "An unknown error occurred. Please try again later.")
