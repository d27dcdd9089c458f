"""The on-sale scenario's own checks, without a system: the draw recomputed by the reference script, admission
order from polling windows and admittedUntil, orders without admission from every source, the sell-out moment,
and the scenario's place in the targets and the report."""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ticketing_bench import onsale, report
from ticketing_bench.client import User
from ticketing_bench.flash_sale import Win
from ticketing_bench.onsale import (
    Admission,
    Attempt,
    Buyer,
    OnSaleRecord,
    OnSaleSize,
    admission_order,
    check_draw,
    load_algorithm,
    own_positions,
    poll_delay,
    sold_out_at,
    unadmitted_orders,
)
from ticketing_bench.runner import PROFILES

SEED = bytes(range(32))
USERS = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(40)]
ON_SALE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T0 = ON_SALE.timestamp()


def _draw(users: list[str] = USERS, seed: bytes = SEED) -> tuple[dict[str, Any], dict[str, Any]]:
    commitment = hashlib.sha256(seed).hexdigest()
    entrants = sorted(hashlib.sha256(u.encode()).hexdigest() for u in users)
    algorithm = "queue-draw-v1: ..."
    before = {"commitment": commitment, "seed": None, "entrants": None, "algorithm": algorithm}
    after = {"commitment": commitment, "seed": seed.hex(), "entrants": entrants, "algorithm": algorithm}
    return before, after


def _told(after: dict[str, Any], users: list[str] = USERS) -> dict[str, int | None]:
    """The positions an honest queue tells each user (the reference script's, by their hash)."""
    by_hash = load_algorithm().positions(after)
    return {u: by_hash[hashlib.sha256(u.encode()).hexdigest()] for u in users}


def test_the_reference_script_of_the_queue_service_is_what_the_bench_runs() -> None:
    algorithm = load_algorithm()
    assert algorithm.source.endswith("services/queue/verify_draw.py")
    _, after = _draw()
    assert algorithm.positions(after) == own_positions(after)  # the fallback copy agrees with the reference
    assert sorted(algorithm.positions(after).values()) == list(range(1, len(USERS) + 1))


def test_without_the_script_the_bench_falls_back_to_its_own_copy_and_says_so(tmp_path: Path) -> None:
    algorithm = load_algorithm(tmp_path / "missing.py")
    assert "own copy" in algorithm.source
    before, after = _draw()
    assert check_draw(algorithm, before, after, _told(after), USERS)["verified"]


def test_an_honest_draw_is_verified() -> None:
    before, after = _draw()
    result = check_draw(load_algorithm(), before, after, _told(after), USERS)
    assert result["verified"], result["problems"]
    assert result["entrants"] == result["expected_entrants"] == len(USERS)
    assert result["position_mismatches"] == 0


def _problems(before: dict[str, Any], after: dict[str, Any], told: dict[str, int | None], joined: list[str]) -> str:
    result = check_draw(load_algorithm(), before, after, told, joined)
    assert not result["verified"]
    return " | ".join(result["problems"])


def test_a_buyer_told_another_position_fails_the_draw() -> None:
    before, after = _draw()
    told = _told(after)
    first, second = USERS[0], USERS[1]
    told[first], told[second] = told[second], told[first]
    assert "2 buyers were told another position" in _problems(before, after, told, USERS)


def test_a_seed_that_is_not_the_commitment_fails_the_draw() -> None:
    before, after = _draw()
    after = {**after, "seed": bytes(32).hex()}
    assert "refuses the draw" in _problems(before, after, _told(_draw()[1]), USERS)


def test_a_commitment_changed_at_the_draw_fails_it() -> None:
    before, _ = _draw()
    _, after = _draw(seed=b"\x01" * 32)
    assert "commitment changed" in _problems(before, after, _told(after), USERS)


def test_a_seed_shown_before_the_draw_fails_it() -> None:
    _, after = _draw()
    assert "shown before the draw" in _problems(after, after, _told(after), USERS)


def test_entrants_must_be_exactly_the_buyers_who_joined() -> None:
    before, _ = _draw(USERS[:-1])  # one buyer left out, and one stranger in
    _, with_stranger = _draw([*USERS[:-1], str(uuid.uuid4())])
    problems = _problems(before, with_stranger, _told(with_stranger, USERS[:-1]), USERS)
    assert "1 buyers who joined before onSaleAt are not entrants" in problems
    assert "1 entrants are none of the buyers who joined" in problems
    assert "could not be read after" in _problems(before, None, {}, USERS)  # type: ignore[arg-type]


def test_a_join_answered_after_on_sale_may_be_in_the_draw_or_behind_it() -> None:
    late, straddling = str(uuid.uuid4()), USERS[-1]
    before, after = _draw()  # the straddling join (sent before onSaleAt, answered after) made it into the draw
    told: dict[str, int | None] = {**_told(after), late: len(USERS) + 1}
    result = check_draw(load_algorithm(), before, after, told, USERS[:-1], [straddling])
    assert result["verified"], result["problems"]
    assert result["expected_entrants"] == len(USERS) - 1
    told[late] = 3  # a late joiner placed inside the lottery
    assert "1 buyers were told another position" in _problems(before, after, told, USERS[:-1])


def _admissions(windows: list[tuple[float | None, float]]) -> list[Admission]:
    """Position i+1 was last seen waiting at windows[i][0] and first seen admitted at windows[i][1]; the queue
    admitted the positions in order (admittedUntil grows with them)."""
    return [Admission(f"u{i}", i + 1, waiting, seen, T0 + 600 + 0.02 * i) for i, (waiting, seen) in enumerate(windows)]


def test_admissions_in_position_order_have_no_violation_even_with_overlapping_windows() -> None:
    # Position 2 was seen admitted (1.2) before position 1 (1.5), but position 1 was last seen waiting at 1.0:
    # it may have been admitted at 1.1. Not proven: no violation.
    result = admission_order(_admissions([(1.0, 1.5), (0.9, 1.2), (1.3, 1.6), (None, 2.0)]))
    assert result["checked"] == 4
    assert result["violations"] == 0
    assert result["admitted_until_inversions"] == 0
    assert result["resolution_s"]["max"] == pytest.approx(0.5)


def test_a_better_position_still_waiting_after_a_worse_one_was_admitted_is_a_violation() -> None:
    # Position 1 was still answered "waiting" by a poll sent at 2.0; position 3 was seen admitted at 1.4.
    result = admission_order(_admissions([(2.0, 2.3), (1.0, 1.2), (1.1, 1.4), (2.1, 2.4)]))
    assert result["violations"] == 2  # positions 2 and 3, both admitted before position 1 for certain
    assert [e["position"] for e in result["examples"]] == [2, 3]
    assert result["examples"][0]["proof_margin_s"] == pytest.approx(0.8)


def test_admitted_until_must_not_decrease_along_the_positions() -> None:
    rows = _admissions([(1.0, 1.1), (1.0, 1.1), (1.0, 1.1)])
    rows[1] = Admission("u1", 2, 1.0, 1.1, rows[0].admitted_until - 0.02)  # type: ignore[operator]
    rows.append(Admission("u3", 4, 1.0, 1.1, None))  # unknown: not counted
    result = admission_order(rows)
    assert result["admitted_until_inversions"] == 1
    assert result["violations"] == 0


def test_a_position_given_twice_is_counted() -> None:
    rows = [*_admissions([(1.0, 1.1), (1.0, 1.1)]), Admission("u9", 2, 1.0, 1.1, None)]
    assert admission_order(rows)["duplicate_positions"] == 1


def test_sold_out_is_the_first_moment_every_ticket_is_held_at_once() -> None:
    # t1 at 1 (paid), t2 at 2 expiring at 4, t3 at 5: t2 is free again by then, so not sold out; t2 again at 6.
    orders = [(1.0, "t1", math.inf), (2.0, "t2", 4.0), (5.0, "t3", 20.0), (6.0, "t2", 30.0)]
    assert sold_out_at(orders, 3) == 6.0
    assert sold_out_at(orders[:3], 3) is None
    assert sold_out_at([(1.0, "t1", 9.0), (2.0, "t2", 9.0)], 2) == 2.0


def test_poll_delay_is_half_the_estimate_within_the_floor_and_the_cap() -> None:
    size = OnSaleSize(buyers=1, tickets=1, connections=1, control=0, lead_seconds=1, poll_floor=0.5, poll_cap=15)
    assert poll_delay(0, size) == 0.5
    assert poll_delay(4, size) == 2.0
    assert poll_delay(100, size) == 15


def _record() -> tuple[OnSaleRecord, dict[str, Buyer]]:
    people = {name: Buyer(User(str(uuid.uuid4()), f"{name}@x", "session=x")) for name in ("a", "b", "c", "ctl")}
    for name in ("a", "b", "c"):
        people[name].joined = True
        people[name].waiting_sent = T0 + 5.0
        people[name].admitted_seen = T0 + 5.5
    record = OnSaleRecord(
        event_id="e",
        on_sale_at=ON_SALE,
        tickets=["t1", "t2", "t3"],
        max_per_buyer=2,
        buyers=[people["a"], people["b"], people["c"]],
        control=[people["ctl"]],
    )
    return record, people


def _attempt(buyer: Buyer, kind: str, status: int, sent: float, order_id: str | None = None) -> Attempt:
    attempt = Attempt(kind, "t1", T0 + sent, T0 + sent + 0.1, status, str(status), order_id)
    buyer.attempts.append(attempt)
    return attempt


def test_refused_attempts_and_admitted_orders_are_no_violation() -> None:
    record, people = _record()
    _attempt(people["ctl"], "early", 400, -5)
    _attempt(people["ctl"], "control", 403, 1)
    _attempt(people["a"], "cheat", 403, 1)
    _attempt(people["a"], "admitted", 201, 6, "o1")
    rows = [("o1", people["a"].user.id, T0 + 6.05)]
    result = unadmitted_orders(record, event_orders=rows, read_back={people["ctl"].user.id: []})
    assert result == {
        "orders": 0,
        "found_by": {},
        "examples": [],
        "ambiguous": 0,
        "before_on_sale": 0,
        "beyond_max_per_buyer": 0,
    }


def test_each_kind_of_order_without_admission_is_found() -> None:
    record, people = _record()
    _attempt(people["ctl"], "early", 201, -5, "o-early")  # before onSaleAt, never joined
    _attempt(people["ctl"], "control", 201, 1, "o-control")
    _attempt(people["a"], "cheat", 201, 1, "o-cheat")  # a was still waiting at 5.0, after this 201 at 1.1
    _attempt(people["b"], "cheat", 201, 5.2, "o-late")  # b's last "waiting" (5.0) is before it: may be admitted
    rows = [
        ("o-db", people["c"].user.id, T0 + 4.0),  # created before c was last seen waiting
        ("o-late", people["b"].user.id, T0 + 5.25),  # the database decides o-late: after b's last waiting
    ]
    result = unadmitted_orders(record, event_orders=rows, read_back={people["ctl"].user.id: ["o-hidden"]})
    assert result["orders"] == 5
    assert result["found_by"] == {
        "answered 201 to a buyer who never joined": 2,
        "answered 201 to a buyer still waiting after it": 1,
        "in the orders database, created before its buyer was last seen waiting": 1,
        "in the orders of a buyer never admitted (GET /api/orders)": 1,
    }
    assert result["ambiguous"] == 0
    assert result["before_on_sale"] == 1


def test_without_the_database_an_attempt_near_the_admission_stays_undecided() -> None:
    record, people = _record()
    _attempt(people["b"], "cheat", 201, 5.2, "o-late")
    result = unadmitted_orders(record)
    assert result["orders"] == 0
    assert result["ambiguous"] == 1


def test_an_order_beyond_max_per_buyer_is_found_only_while_the_others_are_held() -> None:
    record, people = _record()
    a = people["a"]
    for n, expires in enumerate((T0 + 100, T0 + 100)):
        a.wins.append(Win(f"o{n}", "t1", a.user, datetime.fromtimestamp(expires, UTC), pays=False))
    _attempt(a, "beyond", 201, 7, "o-beyond")
    a.wins.append(Win("o-beyond", "t2", a.user, ON_SALE + timedelta(seconds=100), pays=False))
    assert unadmitted_orders(record)["beyond_max_per_buyer"] == 1
    a.wins[0].expires_at = ON_SALE + timedelta(seconds=6)  # expired before the attempt: the limit allowed it
    assert unadmitted_orders(record)["beyond_max_per_buyer"] == 0


def test_quick_and_smoke_profiles_run_the_on_sale_and_full_has_the_issue_size() -> None:
    assert "onsale" in PROFILES["quick"].scenarios
    assert "onsale" in PROFILES["smoke"].scenarios
    full = PROFILES["full"].onsale
    assert (full.buyers, full.tickets) == (5000, 1000)


def _result(**changes: Any) -> dict[str, Any]:
    record, _ = _record()
    before, after = _draw([b.user.id for b in record.buyers])
    told = _told(after, [b.user.id for b in record.buyers])
    for buyer in record.buyers:
        buyer.position = told[buyer.user.id]
        buyer.join_received = T0 - 10
        assert buyer.position is not None
        buyer.admitted_until = ON_SALE + timedelta(seconds=600 + 5 + buyer.position / 50)
    record.draw_before, record.draw_after = before, after
    size = OnSaleSize(buyers=3, tickets=3, connections=2, control=1, lead_seconds=5)
    result = onsale.summarise(
        record,
        size,
        settings={"admit_per_second": 50.0, "admission_seconds": 600.0, "known": True},
        invariant_problems=changes.get("problems", []),
        settle={"settled": True, "seconds_after_load": 1.0},
        event_orders=[],
        read_back={},
        drawn_at=T0 + 0.01,
        algorithm=load_algorithm(),
    )
    return result


def test_targets_and_report_show_the_on_sale(tmp_path: Path) -> None:
    found = _result()
    assert found["violations"] == [], found["violations"]
    assert found["waits_s"]["onSaleAt → admitted (at the queue)"]["count"] == 3
    results: dict[str, Any] = {
        "meta": {"profile": "test", "started": "now", "command": "x", "cpus": 2, "load_before": "0", "local": True},
        "invariants_ok": True,
        "notes": [],
        "onsale": found,
    }
    rows = report.targets(results)
    assert [(r["name"], r["measured"], r["met"]) for r in rows] == [
        ("on-sale: the draw recomputed gives every buyer's position", True, True),
        ("on-sale: admission order equals the draw", True, True),
        ("on-sale: orders without admission", 0, True),
        ("on-sale invariant violations", 0, True),
    ]
    results["targets"] = rows
    files = report.write(tmp_path, results)
    text = (tmp_path / "report.md").read_text()
    assert "## 7. On-sale through the waiting room" in text
    assert "| on-sale: admission order equals the draw | true | true |  | met |" in text
    assert "**Draw verified: true**" in text
    assert tmp_path / "onsale_admission.png" in files


def test_a_broken_invariant_of_the_sale_is_a_violation_and_misses_its_target() -> None:
    found = _result(problems=["paid order o1 is cancelled, not complete"])
    assert found["violations"] == ["paid order o1 is cancelled, not complete"]
    (row,) = [r for r in report.targets({"onsale": found}) if r["name"] == "on-sale invariant violations"]
    assert (row["measured"], row["met"]) == (1, False)
