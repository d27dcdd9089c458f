"""Summarise py-spy raw stacks (``--format raw``) by library: self time of the leaf frame's library, and the share
of samples with any frame of each library on the stack (overlapping: a log line's JSON counts for logging and json).

    uv run python bench/profiling/summarise.py /tmp/prof/orders.txt [--top 15]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# First match wins, on the frame's file (py-spy prints "function (path:line)").
LIBRARIES = [
    ("logging", re.compile(r"^logging/|ticketing_common/logging\.py")),
    ("json", re.compile(r"^json/")),
    ("sqlalchemy", re.compile(r"^sqlalchemy/")),
    ("asyncpg", re.compile(r"^asyncpg/")),
    ("pydantic", re.compile(r"^pydantic(_core)?/")),
    ("fastapi", re.compile(r"^fastapi/")),
    ("starlette", re.compile(r"^starlette/")),
    ("uvicorn+httptools", re.compile(r"^(uvicorn|httptools|h11)/")),
    ("nats-py", re.compile(r"^nats/")),
    ("prometheus", re.compile(r"^prometheus_client/")),
    ("jwt", re.compile(r"^jwt/")),
    ("asyncio", re.compile(r"^asyncio/|^selectors|^uvloop/")),
    ("ticketing", re.compile(r"^ticketing_")),
    ("uuid/datetime/enum/typing", re.compile(r"^(uuid|datetime|enum|typing|_strptime)\.py")),
]
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def library(frame: str) -> str:
    match = FRAME.match(frame.strip())
    path = match.group("file") if match else frame
    for name, pattern in LIBRARIES:
        if pattern.search(path):
            return name
    return "other: " + path.split("/")[0] if "/" in path else "other"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    for path in args.files:
        self_lib: Counter[str] = Counter()
        on_stack: Counter[str] = Counter()
        self_frame: Counter[str] = Counter()
        total = no_frame = 0
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            if not stack:  # a sample without any Python frame (py-spy could not read the stack)
                no_frame += int(count_text)
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            self_lib[library(frames[-1])] += count
            self_frame[frames[-1]] += count
            for name in {library(f) for f in frames}:
                on_stack[name] += count
        print(f"## {path.stem}: {total} samples ({no_frame} more without a Python frame, left out)")
        print("library | self % | on stack %")
        for name, count in self_lib.most_common(args.top):
            print(f"{name} | {100 * count / total:.1f} | {100 * on_stack[name] / total:.1f}")
        print("top self frames:")
        for frame, count in self_frame.most_common(args.top):
            print(f"  {100 * count / total:4.1f}% {frame}")
        print()


if __name__ == "__main__":
    main()
