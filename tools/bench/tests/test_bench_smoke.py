"""The quick bench's invariant part, smaller: start the system like `make up`, run a flash sale and an on-sale
through the waiting room via the gateway, and require every invariant to hold (timings are never asserted)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from ticketing_bench.runner import PROFILES, run

pytestmark = pytest.mark.e2e


def test_a_small_flash_sale_and_on_sale_keep_every_invariant_and_write_the_report() -> None:
    results_root = Path(tempfile.mkdtemp(prefix="ticketing-bench-test-"))
    try:
        outcome = run(PROFILES["smoke"], results_root=results_root)
        sale = outcome.results["flash_sale"]
        assert sale["violations"] == [], sale["violations"]
        assert outcome.results["final_check"]["ok"], outcome.results["final_check"]
        assert outcome.ok
        summary = sale["summary"]
        size = PROFILES["smoke"].sale
        # Every ticket was ordered (more buyers than tickets; a ticket whose order expired during the sale may be
        # ordered again); half of the winners tried to pay (a payment that arrives after the short window is
        # refused, and that order expires like the others).
        assert summary["tickets_left_unsold"] == 0
        assert summary["orders_created"] >= size.tickets
        assert 1 <= summary["orders_paid"] <= (summary["orders_created"] + 1) // 2
        assert summary["payment_statuses"].get("402 Your card was declined.", 0) >= 1
        assert sale["settle"]["settled"]
        on_sale = outcome.results["onsale"]
        assert on_sale["violations"] == [], on_sale["violations"]
        assert on_sale["draw"]["verified"]
        assert on_sale["draw"]["entrants"] == PROFILES["smoke"].onsale.buyers
        assert on_sale["admission"]["admitted"] == PROFILES["smoke"].onsale.buyers
        assert on_sale["admission"]["order"]["violations"] == 0
        assert on_sale["without_admission"]["orders"] == 0
        control = on_sale["sale"]["attempts"]
        assert control["early"] == {"400 Ticket is not on sale yet": PROFILES["smoke"].onsale.control}
        assert control["control"] == {"403 Join the waiting room first": PROFILES["smoke"].onsale.control}
        assert on_sale["sale"]["orders_created"] >= PROFILES["smoke"].onsale.tickets
        written = json.loads((outcome.folder / "results.json").read_text())
        assert written["invariants_ok"] is True
        assert {t["name"] for t in written["targets"]} >= {
            "flash sale attempts/s",
            "flash sale invariant violations",
            "on-sale: admission order equals the draw",
            "on-sale: orders without admission",
        }
        assert all(set(t) == {"name", "wanted", "measured", "unit", "met"} for t in written["targets"])
        assert (outcome.folder / "report.md").read_text().startswith("# Benchmark report: smoke")
        assert (outcome.folder / "flash_sale_latency.png").stat().st_size > 10_000
        assert (outcome.folder / "onsale_admission.png").stat().st_size > 10_000
    finally:
        shutil.rmtree(results_root, ignore_errors=True)
