"""Stripe's form encoding: ``card[token]=tok_visa&types[0]=card`` to ``{"card": {"token": ...}, "types": [...]}``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


class FormError(ValueError):
    """A parameter name that is not valid bracket notation, or used both as a value and as a hash."""


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest form pairs the way Stripe reads them: ``a[b]`` is a hash, ``a[0]`` / ``a[]`` an array element."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise FormError(key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FormError(key)
            node = child
        last = parts[-1] if parts[-1] != "" else str(len(node))
        if isinstance(node.get(last), dict):
            raise FormError(key)
        node[last] = value
    return {k: _arrays(v) for k, v in root.items()}


def _arrays(node: Any) -> Any:
    """Hashes whose keys are all indexes become arrays, in index order."""
    if not isinstance(node, dict):
        return node
    items = {k: _arrays(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items
