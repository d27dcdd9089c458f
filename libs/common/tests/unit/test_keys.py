"""Session keys: JWKs named by their thumbprint, the key ring file, and rotation that keeps a key while tokens it
signed may live."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ticketing_common.keys import (
    KeyFileError,
    KeyRing,
    KeyRingFile,
    SigningKey,
    public_keys_from_jwks,
    read_key_ring,
    rotate_key_file,
    thumbprint,
)

pytestmark = pytest.mark.unit

DAY = 24 * 3600


def test_a_kid_is_the_rfc_7638_thumbprint_of_the_key() -> None:
    # RFC 8037, appendix A.3: the thumbprint of its Ed25519 example key.
    assert thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo") == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_the_public_jwk_set_lists_okp_ed25519_keys_for_eddsa_signatures_without_private_parts() -> None:
    ring = KeyRing((SigningKey.generate(now=1000),))

    [jwk] = ring.public_jwks(token_seconds=DAY, now=1000)["keys"]

    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert jwk["kid"] == ring.signing_key.kid == thumbprint(jwk["x"])


def test_a_rotated_ring_signs_with_the_new_key_and_lists_the_previous_one_until_its_tokens_expire() -> None:
    first = KeyRing((SigningKey.generate(now=1000),))
    second = first.rotated(token_seconds=DAY, now=5000)

    assert second.signing_key.kid != first.signing_key.kid
    listed = [k["kid"] for k in second.public_jwks(token_seconds=DAY, now=5000 + DAY - 1)["keys"]]
    assert listed == [second.signing_key.kid, first.signing_key.kid]
    assert [k["kid"] for k in second.public_jwks(token_seconds=DAY, now=5000 + DAY)["keys"]] == [second.signing_key.kid]
    third = second.rotated(token_seconds=DAY, now=5000 + DAY)
    assert [k.kid for k in third.keys] == [third.signing_key.kid, second.signing_key.kid]


def test_the_key_file_round_trips_and_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"

    ring = rotate_key_file(path, token_seconds=DAY)
    again = rotate_key_file(path, token_seconds=DAY)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [k.kid for k in read_key_ring(path).keys] == [k.kid for k in again.keys]
    assert again.keys[1].kid == ring.signing_key.kid


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist; create it with `ticketing keys rotate"),
        ("not json", "is not a session key file"),
        ('{"keys": []}', "it holds no keys"),
        ('{"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}', "must be an Ed25519 JWK"),
        ('{"keys": [{"kty": "OKP", "crv": "Ed25519", "d": "c2hvcnQ", "created": 1}]}', "is not a session key file"),
    ],
)
def test_a_missing_or_malformed_key_file_is_refused_with_a_message(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(KeyFileError, match=message):
        read_key_ring(path)


def test_a_key_whose_public_part_does_not_match_its_private_part_is_refused(tmp_path: Path) -> None:
    jwk = SigningKey.generate().private_jwk()
    jwk["x"] = SigningKey.generate().private_jwk()["x"]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [jwk]}))

    with pytest.raises(KeyFileError, match="x does not match d"):
        read_key_ring(path)


def test_auth_sees_a_rotation_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    before = rotate_key_file(path, token_seconds=DAY)
    ring_file = KeyRingFile(path, check_every=0)

    after = rotate_key_file(path, token_seconds=DAY)

    assert ring_file.ring.signing_key.kid == after.signing_key.kid != before.signing_key.kid


def test_only_ed25519_signing_keys_are_taken_from_a_jwk_set() -> None:
    key = SigningKey.generate()
    good = KeyRing((key,)).public_jwks(token_seconds=DAY)["keys"][0]
    jwks = {
        "keys": [
            good,
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "es", "alg": "ES256"},
            {**good, "kid": "broken", "x": "!!"},
        ]
    }

    assert list(public_keys_from_jwks(jwks)) == [key.kid]
    assert public_keys_from_jwks({"keys": "nope"}) == {}


def test_a_key_rotated_to_activate_later_is_published_at_once_and_signs_only_from_then() -> None:
    first = KeyRing((SigningKey.generate(now=1000),))
    second = first.rotated(token_seconds=DAY, now=5000, activate_after=120)

    new = second.keys[0]
    assert second.signing_key_at(5000 + 119).kid == first.signing_key.kid
    assert second.signing_key_at(5000 + 120).kid == new.kid
    listed = [k["kid"] for k in second.public_jwks(token_seconds=DAY, now=5000)["keys"]]
    assert listed == [new.kid, first.signing_key.kid]
    # The previous key verifies for a token lifetime after the new one took over, not after it was published.
    assert [k["kid"] for k in second.public_jwks(token_seconds=DAY, now=5000 + 120 + DAY - 1)["keys"]] == listed
    assert [k["kid"] for k in second.public_jwks(token_seconds=DAY, now=5000 + 120 + DAY)["keys"]] == [new.kid]


def test_when_a_key_activates_survives_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    rotate_key_file(path, token_seconds=DAY, now=1000)
    ring = rotate_key_file(path, token_seconds=DAY, now=2000, activate_after=60)

    again = read_key_ring(path)

    assert again.keys[0].activates == 2060
    assert again.signing_key_at(2059).kid == ring.keys[1].kid


def test_auth_keeps_signing_with_the_last_good_ring_when_a_rotation_leaves_a_broken_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.json"
    good = rotate_key_file(path, token_seconds=DAY)
    ring_file = KeyRingFile(path, check_every=0)

    path.write_text("not json")

    assert ring_file.ring.signing_key.kid == good.signing_key.kid
    assert "cannot read the session key file again" in caplog.text
