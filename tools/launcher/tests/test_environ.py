"""A throwaway stack's environment keeps nothing that would point it at outside servers or secrets."""

from __future__ import annotations

import pytest

from ticketing_launcher.stack import OUTSIDE_SETTINGS, isolated_environ


def test_drops_outside_servers_and_secrets_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OUTSIDE_SETTINGS:
        monkeypatch.setenv(name, "from-outside")
    monkeypatch.setenv("ARGON2_TIME_COST", "3")

    environ = isolated_environ(ORDER_EXPIRATION_SECONDS="4", SESSION_KEY_FILE="own-keys.json")

    assert environ["ORDER_EXPIRATION_SECONDS"] == "4"
    assert environ["SESSION_KEY_FILE"] == "own-keys.json"  # given explicitly: kept
    assert not {name for name in OUTSIDE_SETTINGS if name != "SESSION_KEY_FILE"} & set(environ)
    assert environ["ARGON2_TIME_COST"] == "3"
