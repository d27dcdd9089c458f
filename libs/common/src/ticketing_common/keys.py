"""Session signing keys: Ed25519 key pairs as JWKs, the private key ring file only auth reads, and the public JWK
Set every other service verifies with.

The key ring file is a JWK Set whose keys carry their private part (``d``), when they were ``created`` and when
they start signing (``activates``). A key is published from the moment it is in the file; the newest active key
signs (publishing first lets every replica of every service learn a key before any token needs it); an older key
verifies until every token it signed has expired (its successor activated more than a token's lifetime ago).
``ticketing keys rotate`` adds a key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

logger = logging.getLogger("ticketing.sessions")

ALGORITHM = "EdDSA"


class KeyFileError(Exception):
    """The key ring file is missing or malformed; the message says what to do."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(x: str) -> str:
    """The RFC 7638 thumbprint of an Ed25519 public key: a ``kid`` that names the key and nothing else."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    x = _b64(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": thumbprint(x), "alg": ALGORITHM, "use": "sig"}


def public_keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """``kid`` -> public key for every Ed25519 signing key of a JWK Set; anything else in it is ignored."""
    found: dict[str, Ed25519PublicKey] = {}
    keys = jwks.get("keys")
    for jwk in keys if isinstance(keys, list) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
            continue
        try:
            raw = _unb64(str(jwk["x"]))
            found[str(jwk["kid"])] = Ed25519PublicKey.from_public_bytes(raw)
        except (KeyError, ValueError):
            continue
    return found


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    created: int
    activates: int | None = None  # None: signs from ``created``

    @property
    def signs_from(self) -> int:
        return self.created if self.activates is None else self.activates

    @classmethod
    def generate(cls, *, now: float | None = None, activate_after: int = 0) -> SigningKey:
        private_key = Ed25519PrivateKey.generate()
        created = int(time.time() if now is None else now)
        return cls(
            kid=public_jwk(private_key.public_key())["kid"],
            private_key=private_key,
            created=created,
            activates=created + activate_after if activate_after else None,
        )

    def private_jwk(self) -> dict[str, Any]:
        d = _b64(self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
        jwk: dict[str, Any] = {**public_jwk(self.private_key.public_key()), "d": d, "created": self.created}
        if self.activates is not None:
            jwk["activates"] = self.activates
        return jwk


@dataclass(frozen=True)
class KeyRing:
    """Signing keys, newest first."""

    keys: tuple[SigningKey, ...]

    def signing_key_at(self, now: float | None = None) -> SigningKey:
        """The newest key already active (the oldest key when none is yet)."""
        moment = time.time() if now is None else now
        return next((k for k in self.keys if k.signs_from <= moment), self.keys[-1])

    @property
    def signing_key(self) -> SigningKey:
        return self.signing_key_at()

    def verifying_keys(self, *, token_seconds: int, now: float | None = None) -> list[SigningKey]:
        """The keys that may sign or have signed a token still unexpired: those not active yet, the signing key, and
        each older one whose successor began signing less than a token's lifetime ago."""
        moment = time.time() if now is None else now
        signing = self.signing_key_at(moment)
        kept = [k for k in self.keys if k.signs_from > moment or k is signing]
        older = self.keys[self.keys.index(signing) + 1 :]
        for successor, key in zip((signing, *older), older, strict=False):
            if successor.signs_from + token_seconds > moment:
                kept.append(key)
        return kept

    def public_jwks(self, *, token_seconds: int, now: float | None = None) -> dict[str, list[dict[str, str]]]:
        keys = self.verifying_keys(token_seconds=token_seconds, now=now)
        return {"keys": [public_jwk(k.private_key.public_key()) for k in keys]}

    def rotated(self, *, token_seconds: int, now: float | None = None, activate_after: int = 0) -> KeyRing:
        """This ring with a new key in front, signing ``activate_after`` seconds from now (published at once);
        keys that can no longer have signed a live token go."""
        moment = time.time() if now is None else now
        grown = KeyRing((SigningKey.generate(now=moment, activate_after=activate_after), *self.keys))
        return KeyRing(tuple(grown.verifying_keys(token_seconds=token_seconds, now=moment)))

    def to_json(self) -> str:
        return json.dumps({"keys": [k.private_jwk() for k in self.keys]}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str) -> KeyRing:
        try:
            data = json.loads(text)
            entries: Sequence[Any] = data["keys"]
            if not isinstance(entries, list) or not entries:
                raise ValueError("it holds no keys")
            keys = [_private_key(entry) for entry in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(
                f"{source} is not a session key file ({exc}); create one with `ticketing keys rotate --file {source}`"
            ) from None
        return cls(tuple(sorted(keys, key=lambda k: k.created, reverse=True)))


def _private_key(entry: Any) -> SigningKey:
    if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        raise ValueError("every key must be an Ed25519 JWK (kty OKP, crv Ed25519)")
    private_key = Ed25519PrivateKey.from_private_bytes(_unb64(str(entry["d"])))
    public = public_jwk(private_key.public_key())
    if entry.get("x") not in (None, public["x"]):
        raise ValueError(f"key {entry.get('kid')}: x does not match d")
    activates = entry.get("activates")
    return SigningKey(
        kid=public["kid"],
        private_key=private_key,
        created=int(entry["created"]),
        activates=None if activates is None else int(activates),
    )


def read_key_ring(path: Path) -> KeyRing:
    """The key ring in ``path``; :class:`KeyFileError` with a message when it is missing or malformed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeyFileError(
            f"session key file {path} does not exist; create it with `ticketing keys rotate --file {path}`"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read session key file {path}: {exc.strerror}") from None
    return KeyRing.from_json(text, source=str(path))


def write_key_ring(path: Path, ring: KeyRing) -> None:
    """Replace ``path`` atomically with ``ring``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(ring.to_json())
    os.replace(partial, path)


def rotate_key_file(path: Path, *, token_seconds: int, now: float | None = None, activate_after: int = 0) -> KeyRing:
    """Add a new signing key to the file (creating it when absent; a first key signs at once) and return the new
    ring."""
    ring = read_key_ring(path) if path.exists() else KeyRing(())
    if ring.keys:
        rotated = ring.rotated(token_seconds=token_seconds, now=now, activate_after=activate_after)
    else:
        rotated = KeyRing((SigningKey.generate(now=now),))
    write_key_ring(path, rotated)
    return rotated


class KeyRingFile:
    """The key ring file as auth uses it: read again when it changes (a rotation needs no restart), looked at no
    more than once a second."""

    def __init__(self, path: Path, *, check_every: float = 1.0) -> None:
        self.path = path
        self._check_every = check_every
        self._ring = read_key_ring(path)
        self._seen = self._stamp()
        self._checked = time.monotonic()

    def _stamp(self) -> tuple[int, int]:
        stat = self.path.stat()
        return stat.st_mtime_ns, stat.st_ino

    @property
    def ring(self) -> KeyRing:
        now = time.monotonic()
        if now - self._checked >= self._check_every:
            self._checked = now
            try:
                stamp = self._stamp()
                if stamp != self._seen:
                    self._ring, self._seen = read_key_ring(self.path), stamp
            except (OSError, KeyFileError) as exc:
                # Keep signing with what was read last; say so, or a broken rotation would go unnoticed.
                logger.warning("cannot read the session key file again", extra={"error": str(exc)})
        return self._ring
