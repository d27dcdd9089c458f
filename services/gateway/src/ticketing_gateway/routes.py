"""Which request targets the gateway forwards at all; where each goes is the route table (``ticketing_common.routes``).

The services' operational endpoints (``ticketing_common.http_server.OPERATIONAL_PATHS``: health, metrics, API
documents) are internal on every route: the gateway answers 404 for them, and behind the Ingress the services
refuse them to proxied requests.
"""

from __future__ import annotations

import re

from ticketing_common.http_server import origin_form_problem

_PERCENT = re.compile(rb"%(.{0,2})")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def target_problem(raw_path: bytes, query: bytes) -> str | None:
    """Why a request target may not be forwarded (None when it may).

    Refused rather than normalised, so the path a service sees is the path the route matched: no dot segments
    (raw, encoded or double-encoded), no encoded slash, backslash, dot or percent sign, no empty segments and no
    ``;`` path parameters, which back ends and proxies disagree about.
    """
    if problem := origin_form_problem(raw_path + (b"?" + query if query else b"")):
        return problem
    for match in _PERCENT.finditer(raw_path):
        code = match.group(1)
        if len(code) != 2 or not set(code) <= _HEX:
            return "The path has a malformed percent-encoding"
        if int(code, 16) < 0x20 or chr(int(code, 16)) in "/\\.%\x7f":
            return "The path must not percent-encode slashes, backslashes, dots, percent signs or controls"
    if b";" in raw_path:
        return "The path must not carry ; parameters"
    segments = raw_path.split(b"/")[1:]
    if any(segment.strip(b".") == b"" and segment for segment in segments):
        return "The path must not contain . or .. segments"
    if b"" in segments[:-1]:
        return "The path must not contain empty segments (//)"
    return None
