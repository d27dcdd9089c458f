"""The short chaos run of ``make test``: the whole system under the scripted load while its parts are killed
(SIGKILL) and restarted; once quiet, no invariant is broken and every failed request failed cleanly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ticketing_chaos.run import run_chaos

pytestmark = pytest.mark.e2e

SECONDS = float(os.environ.get("CHAOS_TEST_SECONDS", "45"))


def test_the_system_stays_consistent_under_load_and_crashes(tmp_path: Path) -> None:
    result = run_chaos(seconds=SECONDS, workers=3, settle=60, results_dir=tmp_path, log=sys.stdout)
    report = (tmp_path / "report.md").read_text()

    assert result.ok, report
    assert result.invariants_broken == 0
    assert result.tally.kinds.get("unclean", 0) == 0
    assert len(result.restarts) >= 3, report  # faults really happened
    assert all(r.recovery_seconds is not None for r in result.restarts), report
    assert result.tally.outcomes["paid"] > 0, report  # and so did business
    assert result.tally.outcomes["order placed"] > 0, report
    assert (tmp_path / "report.json").exists()
