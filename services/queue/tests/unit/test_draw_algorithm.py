"""The draw, as a pure function: positions 1..n from the seed and the entrants' ids alone, exactly as
``DRAW_ALGORITHM`` and the reference script say."""

from __future__ import annotations

import hashlib
import importlib.util
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from ticketing_queue import domain

pytestmark = pytest.mark.unit

SEED = bytes(range(32))
_RANDOM = random.Random(7)
USERS = [uuid.UUID(int=_RANDOM.getrandbits(128), version=4) for _ in range(50)]
VERIFY_DRAW = Path(__file__).resolve().parents[2] / "verify_draw.py"


def _verify_draw() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_draw", VERIFY_DRAW)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_entrant_hash_is_sha256_of_the_canonical_lowercase_hyphenated_id() -> None:
    user = uuid.UUID("3F2504E0-4F89-41D3-9A0C-0305E82C3301")

    assert domain.entrant_hash(user) == hashlib.sha256(b"3f2504e0-4f89-41d3-9a0c-0305e82c3301").hexdigest()


def test_the_commitment_is_sha256_of_the_seed_and_the_sort_key_hashes_seed_then_entrant_bytes() -> None:
    entrant = domain.entrant_hash(USERS[0])

    assert domain.commitment(SEED) == hashlib.sha256(SEED).hexdigest()
    assert domain.sort_key(SEED, entrant) == hashlib.sha256(SEED + bytes.fromhex(entrant)).hexdigest()


def test_positions_are_one_to_n_by_ascending_sort_key() -> None:
    positions = domain.draw(SEED, USERS)

    assert sorted(positions.values()) == list(range(1, 51))
    keys = sorted(USERS, key=lambda u: domain.sort_key(SEED, domain.entrant_hash(u)))
    assert [positions[u] for u in keys] == list(range(1, 51))


def test_a_known_draw_stays_the_same_forever() -> None:
    # queue-draw-v1 is published: the same seed and entrants must always give the same positions (computed once,
    # independently, with hashlib alone).
    users = [uuid.UUID(f"00000000-0000-4000-8000-00000000000{i}") for i in range(1, 9)]

    positions = domain.draw(SEED, users)

    assert [positions[user] for user in users] == [8, 6, 5, 4, 1, 3, 7, 2]
    assert domain.commitment(SEED) == "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
    assert domain.entrant_hash(users[0]) == "11e594f481958c10e3015d0bf0447a22f068a8a647f475df15ce2c7ab4b8f3f1"


def test_the_order_entrants_arrive_in_and_repeats_change_nothing() -> None:
    shuffled = USERS[:]
    random.Random(1).shuffle(shuffled)

    assert domain.draw(SEED, shuffled) == domain.draw(SEED, USERS)
    assert domain.draw(SEED, [*USERS, *USERS[:10]]) == domain.draw(SEED, USERS)


def test_other_entrants_do_not_change_anyones_relative_order() -> None:
    # An entrant's key depends on the seed and their own id only: more entrants shift positions, never the order.
    alone = domain.draw(SEED, USERS[:10])
    crowded = domain.draw(SEED, USERS)

    assert sorted(USERS[:10], key=alone.__getitem__) == sorted(USERS[:10], key=crowded.__getitem__)


def test_another_seed_gives_another_order() -> None:
    assert domain.draw(bytes(32), USERS) != domain.draw(SEED, USERS)


def test_the_published_entrants_are_the_sorted_hashes() -> None:
    assert domain.published_entrants(reversed(USERS)) == sorted(domain.entrant_hash(u) for u in USERS)


def test_the_reference_script_agrees_with_the_service_on_every_position() -> None:
    verify_draw = _verify_draw()
    published = {
        "commitment": domain.commitment(SEED),
        "seed": SEED.hex(),
        "entrants": domain.published_entrants(USERS),
        "algorithm": domain.DRAW_ALGORITHM,
    }

    by_hash = verify_draw.positions(published)

    assert by_hash == {domain.entrant_hash(u): p for u, p in domain.draw(SEED, USERS).items()}
    assert verify_draw.entrant_hash(str(USERS[3]).upper()) == domain.entrant_hash(USERS[3])


def test_the_reference_script_refuses_a_seed_other_than_the_committed_one() -> None:
    verify_draw = _verify_draw()
    published = {"commitment": domain.commitment(SEED), "seed": bytes(32).hex(), "entrants": []}

    with pytest.raises(verify_draw.DrawError):
        verify_draw.positions(published)


ON_SALE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("drawn", "room_on_sale_at", "fired_on_sale_at", "now", "draws"),
    [
        (False, ON_SALE, ON_SALE, ON_SALE, True),  # the schedule of the time in force
        (False, ON_SALE, ON_SALE, ON_SALE - timedelta(milliseconds=5), True),  # the database's clock a bit behind
        (True, ON_SALE, ON_SALE, ON_SALE, False),  # drawn already: never twice
        (False, ON_SALE + timedelta(hours=1), ON_SALE, ON_SALE, False),  # moved later: the new schedule will fire
        (False, ON_SALE - timedelta(hours=1), ON_SALE, ON_SALE, True),  # moved earlier: the sale is open, draw
    ],
)
def test_a_fired_schedule_draws_once_and_only_for_an_open_sale_or_the_time_in_force(
    drawn: bool, room_on_sale_at: datetime, fired_on_sale_at: datetime, now: datetime, draws: bool
) -> None:
    assert (
        domain.should_draw(drawn=drawn, room_on_sale_at=room_on_sale_at, fired_on_sale_at=fired_on_sale_at, now=now)
        is draws
    )


def test_buyers_who_joined_at_or_after_on_sale_at_go_behind_the_draw_in_join_order() -> None:
    early = [domain.Joiner(user, ON_SALE - timedelta(seconds=i + 1)) for i, user in enumerate(USERS[:6])]
    late = [
        domain.Joiner(USERS[6], ON_SALE + timedelta(milliseconds=40)),
        domain.Joiner(USERS[7], ON_SALE),
        domain.Joiner(USERS[8], ON_SALE + timedelta(milliseconds=3)),
    ]

    positions, in_draw = domain.draw_room(SEED, [*late, *early], on_sale_at=ON_SALE)

    assert in_draw == 6
    assert {u: p for u, p in positions.items() if p <= 6} == domain.draw(SEED, USERS[:6])
    assert [positions[USERS[7]], positions[USERS[8]], positions[USERS[6]]] == [7, 8, 9]
