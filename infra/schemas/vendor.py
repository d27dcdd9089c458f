"""Vendor the custom resources' schemas listed in sources.json, verbatim, at the pinned commits.

    uv run python infra/schemas/vendor.py            download every file again (raw.githubusercontent.com)
    uv run python infra/schemas/vendor.py --git kubernetes-sigs/gateway-api=~/src/gateway-api
                                                     read that repository from a local clone instead
    uv run python infra/schemas/vendor.py --only keda-v2.20.2/keda.sh_scaledobjects.yaml
                                                     only that entry (its file as in sources.json); repeatable
    uv run python infra/schemas/vendor.py --check    only check the files against their recorded sha256

To move to another version, edit the entry's ref, commit, path and file (the folder carries the version), run the
script, and run `uv run pytest infra -q`: the overlays must still validate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources.json"


def load_sources() -> dict[str, Any]:
    sources: dict[str, Any] = json.loads(SOURCES.read_text())
    return sources


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(entry: dict[str, str], clones: dict[str, Path]) -> bytes:
    repository, commit, path = entry["repository"], entry["commit"], entry["path"]
    if repository in clones:
        return subprocess.run(
            ["git", "-C", str(clones[repository]), "show", f"{commit}:{path}"], check=True, capture_output=True
        ).stdout
    url = f"https://raw.githubusercontent.com/{repository}/{commit}/{path}"
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
        return data


def check(sources: dict[str, Any]) -> list[str]:
    problems = []
    for entry in sources["sources"]:
        target = HERE / entry["file"]
        if not target.exists():
            problems.append(f"{entry['file']}: missing")
        elif sha256(target.read_bytes()) != entry.get("sha256"):
            problems.append(f"{entry['file']}: sha256 differs from sources.json")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="check the vendored files, download nothing")
    parser.add_argument("--git", action="append", default=[], metavar="OWNER/NAME=DIR", help="a local clone")
    parser.add_argument("--only", action="append", default=[], metavar="FILE", help="vendor only this entry")
    args = parser.parse_args()
    sources = load_sources()
    if args.check:
        problems = check(sources)
        print("\n".join(problems) or f"{len(sources['sources'])} files match sources.json")
        return 1 if problems else 0
    clones = {name: Path(path).expanduser() for name, _, path in (item.partition("=") for item in args.git)}
    unknown = set(args.only) - {entry["file"] for entry in sources["sources"]}
    if unknown:
        parser.error(f"not in sources.json: {', '.join(sorted(unknown))}")
    for entry in sources["sources"]:
        if args.only and entry["file"] not in args.only:
            continue
        data = fetch(entry, clones)
        target = HERE / entry["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        entry["sha256"] = sha256(data)
        print(f"{entry['file']}: {entry['repository']}@{entry['ref']} ({entry['commit'][:12]}) {entry['path']}")
    SOURCES.write_text(json.dumps(sources, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
