"""The chaos report names the cause of an unclean answer: the components' "unhandled error" log lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ticketing_chaos.run import unhandled_errors

pytestmark = pytest.mark.unit


def test_unhandled_errors_are_quoted_by_component_path_and_the_exceptions_last_line(tmp_path: Path) -> None:
    entry = {
        "level": "error",
        "message": "unhandled error",
        "path": "/api/tickets",
        "exception": "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'price'\n",
    }
    log = tmp_path / "system.log"
    log.write_text(
        "tickets   | " + json.dumps({"level": "info", "message": "request", "path": "/api/tickets"}) + "\n"
        "chaos: kill -9 postgres (down 2.1s)\n"
        "tickets   | " + json.dumps(entry) + "\n"
        'orders    | not json but says "unhandled error"\n'
    )

    assert unhandled_errors(log) == ["tickets /api/tickets: KeyError: 'price'"]
