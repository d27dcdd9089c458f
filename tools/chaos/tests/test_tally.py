"""The chaos load's verdict on each answer: what counts as a clean failure."""

from __future__ import annotations

import httpx
import pytest

from ticketing_chaos.tally import CONNECTION, OK, REFUSED, TIMEOUT, UNAVAILABLE, UNCLEAN, Tally, classify


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, b"{}", OK),
        (204, b"", OK),
        (400, b'{"errors": [{"message": "Ticket is already reserved"}]}', REFUSED),
        (402, b'{"errors": [{"message": "Your card was declined."}]}', REFUSED),
        (503, b'{"errors": [{"message": "Service unavailable"}]}', UNAVAILABLE),
        (503, b'{"errors": [{"message": "Error connecting to database", "field": "x"}]}', UNAVAILABLE),
        (503, b"<html>Service Unavailable</html>", UNCLEAN),
        (503, b'{"detail": "down"}', UNCLEAN),
        (503, b'{"errors": []}', UNCLEAN),
        (503, b'{"errors": [{"message": "x", "trace": "..."}]}', UNCLEAN),
        (500, b'{"errors": [{"message": "Something went wrong"}]}', UNCLEAN),
        (502, b'{"errors": [{"message": "Bad gateway"}]}', UNCLEAN),
    ],
)
def test_every_answer_is_classified(status: int, body: bytes, kind: str) -> None:
    assert classify(httpx.Response(status, content=body)) == kind


def test_the_tally_counts_failures_by_kind_and_keeps_unclean_samples() -> None:
    tally = Tally()
    tally.record("GET /x", httpx.Response(200))
    tally.record("GET /x", httpx.Response(500, content=b"boom"))
    tally.record_error("GET /x", httpx.ConnectError("refused"))
    tally.record_error("GET /x", httpx.ReadTimeout("slow"))

    assert tally.requests == 4
    assert tally.failed == {UNCLEAN: 1, CONNECTION: 1, TIMEOUT: 1}
    assert tally.unclean_samples == [{"route": "GET /x", "status": 500, "body": "boom"}]
