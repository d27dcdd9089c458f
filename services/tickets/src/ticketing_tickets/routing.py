"""A route class whose JSON bodies keep numbers exact: fractions parse as ``Decimal``, never as ``float``.

With the standard parser ``19.999999999999999999`` would silently become ``20.0``; here it stays what the
client sent, so the price validation can refuse it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def loads_exact(body: bytes | str) -> Any:
    """``json.loads`` with fractions as Decimal; non-finite literals (NaN, Infinity) become Decimal too, for
    the validators to refuse with a field message. Every parse failure is a ``JSONDecodeError``."""
    text = body.decode() if isinstance(body, bytes) else body
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        raise json.JSONDecodeError(str(exc), text, 0) from None


class ExactJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_exact(await self.body())
        return self._json


class ExactJSONRoute(APIRoute):
    """Use as ``APIRouter(route_class=ExactJSONRoute)``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # nothing to parse: skip the wrapper's per-request request object

        async def exact_json_handler(request: Request) -> Response:
            return await handler(ExactJSONRequest(request.scope, request.receive))

        return exact_json_handler
