"""Counting what the load saw: every response classified, so a fault may fail a request only cleanly.

A clean failure is a 4xx (the system said no), a 503 in the shared error format (a dependency is down), or a
connection error / timeout (the process answering was killed). Anything else (a 500, a 502, a 503 without
``{"errors": [{"message": ...}]}``) is an unclean failure: the run fails on it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

OK = "ok"
REFUSED = "refused"  # 4xx: an answer on purpose
UNAVAILABLE = "unavailable"  # 503 in the shared format
UNCLEAN = "unclean"  # any other 5xx, or a 503 in another shape
CONNECTION = "connection"  # refused / reset / closed: the answering process was down
TIMEOUT = "timeout"


def is_error_body(body: Any) -> bool:
    """True for the shared error format: ``{"errors": [{"message": str, "field"?: str}, ...]}`` (non-empty)."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list) or not body["errors"]:
        return False
    for item in body["errors"]:
        if not isinstance(item, dict) or not isinstance(item.get("message"), str):
            return False
        if set(item) - {"message", "field"} or ("field" in item and not isinstance(item["field"], str)):
            return False
    return True


def classify(response: httpx.Response) -> str:
    """The kind of one HTTP answer (see the module docstring)."""
    if response.status_code < 400:
        return OK
    if response.status_code < 500:
        return REFUSED
    if response.status_code == 503:
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return UNCLEAN
        return UNAVAILABLE if is_error_body(body) else UNCLEAN
    return UNCLEAN


def classify_error(exc: httpx.HTTPError) -> str:
    return TIMEOUT if isinstance(exc, httpx.TimeoutException) else CONNECTION


@dataclass
class Tally:
    """Requests made, by kind, by status and by route; unclean answers kept as samples for the report."""

    kinds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    unclean_samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.kinds.values())

    @property
    def failed(self) -> dict[str, int]:
        return {kind: n for kind, n in self.kinds.items() if kind not in (OK, REFUSED)}

    def record(self, route: str, response: httpx.Response) -> str:
        kind = classify(response)
        self.kinds[kind] += 1
        self.statuses[str(response.status_code)] += 1
        self.by_route[f"{route} {response.status_code}"] += 1
        if kind == UNCLEAN and len(self.unclean_samples) < 20:
            self.unclean_samples.append({"route": route, "status": response.status_code, "body": response.text[:300]})
        return kind

    def record_error(self, route: str, exc: httpx.HTTPError) -> str:
        kind = classify_error(exc)
        self.kinds[kind] += 1
        self.by_route[f"{route} {kind}"] += 1
        return kind

    def outcome(self, name: str) -> None:
        """A business outcome of the load (a sale, a decline, a cancellation...), to show it did real work."""
        self.outcomes[name] += 1
