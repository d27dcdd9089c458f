#!/usr/bin/env python3
"""Recompute a waiting room's draw from what the queue service publishes: anyone can check it (Python 3.8+, the
standard library only; it shares no code with the service on purpose).

    python verify_draw.py draw.json                                  # a saved GET /api/queue/<eventId>/draw
    python verify_draw.py https://ticketing.dev/api/queue/<eventId>/draw
    curl -s .../draw | python verify_draw.py -
    python verify_draw.py draw.json --user-id <your user id>         # your position only
    python verify_draw.py draw.json --json                           # {"<entrant hash>": position, ...}

It checks that the revealed seed matches the commitment shown before the draw (sha256(seed) == commitment) and
that the entrants are distinct sorted hashes, then prints every entrant's position. The algorithm
(queue-draw-v1, services/queue/README.md):

    h = sha256(UTF-8 bytes of the user id, lowercase and hyphenated: 36 characters), lowercase hex
    entrants = the h of everyone in the draw, sorted
    k = sha256(seed bytes || bytes.fromhex(h)), lowercase hex
    positions 1..n by ascending k, then by ascending h

Buyers who joined after the draw are not in it: they follow in the order they joined (n+1, n+2, ...).
Exit status: 0 when the draw checks out, 1 when it does not (or is not revealed yet), 2 on bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.request
import uuid
from typing import Any


class DrawError(Exception):
    """The draw does not check out."""


def entrant_hash(user_id: str) -> str:
    canonical = str(uuid.UUID(user_id))  # lowercase, hyphenated
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def positions(draw: dict[str, Any]) -> dict[str, int]:
    """Every entrant hash's position, after checking the seed against the commitment."""
    seed_hex, entrants, commitment = draw.get("seed"), draw.get("entrants"), draw.get("commitment")
    if seed_hex is None or entrants is None:
        raise DrawError("the draw has not happened yet: the seed and the entrants are not revealed")
    seed = bytes.fromhex(seed_hex)
    if hashlib.sha256(seed).hexdigest() != commitment:
        raise DrawError(f"sha256(seed) is {hashlib.sha256(seed).hexdigest()}, not the commitment {commitment}")
    if entrants != sorted(set(entrants)):
        raise DrawError("the entrants are not distinct and sorted")
    keys = {h: hashlib.sha256(seed + bytes.fromhex(h)).hexdigest() for h in entrants}
    ranked = sorted(entrants, key=lambda h: (keys[h], h))
    return {h: position for position, h in enumerate(ranked, start=1)}


def load(source: str) -> dict[str, Any]:
    if source == "-":
        data: dict[str, Any] = json.load(sys.stdin)
    elif source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310 - the URL the user gave
            data = json.load(response)
    else:
        with open(source, encoding="utf-8") as file:
            data = json.load(file)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recompute a waiting room's draw (queue-draw-v1).")
    parser.add_argument("source", help="the JSON of GET /api/queue/<eventId>/draw: a file, a URL, or - for stdin")
    parser.add_argument("--user-id", help="print only this user's position")
    parser.add_argument("--json", action="store_true", help="print {entrant hash: position} as JSON")
    args = parser.parse_args(argv)
    try:
        draw = load(args.source)
        by_hash = positions(draw)
    except DrawError as exc:
        print(f"draw does not check out: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot read the draw: {exc}", file=sys.stderr)
        return 2
    if args.user_id is not None:
        try:
            h = entrant_hash(args.user_id)
        except ValueError:
            print(f"not a user id: {args.user_id}", file=sys.stderr)
            return 2
        if h not in by_hash:
            print(f"{args.user_id} ({h}) is not in the draw (joined after it, or not at all)")
            return 0
        print(f"{args.user_id} ({h}) is at position {by_hash[h]} of {len(by_hash)}")
        return 0
    if args.json:
        print(json.dumps(by_hash, indent=2))
        return 0
    print(f"commitment matches the seed; {len(by_hash)} entrants")
    for h, position in sorted(by_hash.items(), key=lambda pair: pair[1]):
        print(f"{position:>8}  {h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
