"""Taking personal fields out of a row to store (``events.Row``), and putting them back
into a row read.

A field is ``ip``, ``user_agent`` or ``metadata.<key>``, where dots in ``<key>`` walk into
nested objects (``metadata.customer.email``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from auditq.events import COLUMN, Row

_MISSING = object()
_METADATA = COLUMN["metadata"]


def _path(name: str) -> list[str]:
    return name.split(".")[1:]


class Fields:
    """The configured personal fields, parsed once (the drain calls ``take`` per row)."""

    def __init__(self, names: Iterable[str]) -> None:
        names = list(names)
        self.columns = [(n, COLUMN[n]) for n in names if n in ("ip", "user_agent")]
        self.paths = [(n, _path(n)) for n in names if n not in ("ip", "user_agent")]
        # Metadata holding none of the paths' first keys (most events) has nothing to take.
        self.heads = frozenset(path[0] for _, path in self.paths)

    def take(self, row: Row) -> tuple[dict[str, Any], dict[int, Any]]:
        """(the row's personal values by field name, the updates that remove them: column
        index -> new value). The row itself is left as it is.

        Metadata is copied only along the paths that change, so a row without personal
        metadata costs no copy; a row taken already has nothing left to take."""
        found: dict[str, Any] = {}
        updates: dict[int, Any] = {}
        for name, index in self.columns:
            value = row[index]
            if value is not None:
                found[name] = value
                updates[index] = None
        metadata = row[_METADATA]
        if self.heads.isdisjoint(metadata):
            return found, updates
        for name, path in self.paths:
            if path[0] in metadata:
                value = _get(metadata, path)
                if value is not _MISSING:
                    found[name] = value
                    metadata = _without(metadata, path)
        if metadata is not row[_METADATA]:
            updates[_METADATA] = metadata
        return found, updates


def put(row: dict[str, Any], values: dict[str, Any]) -> None:
    """Set each field's value in a row as a store reads it (metadata a dict), in place."""
    for name, value in values.items():
        if name in ("ip", "user_agent"):
            row[name] = value
            continue
        node = row["metadata"] = dict(row.get("metadata") or {})
        *parents, leaf = _path(name)
        for key in parents:
            child = node.get(key)
            node[key] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[leaf] = value


def _get(metadata: dict[str, Any], path: list[str]) -> Any:
    node: Any = metadata
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _without(metadata: dict[str, Any], path: list[str]) -> dict[str, Any]:
    head, rest = path[0], path[1:]
    copy = dict(metadata)
    if rest:
        copy[head] = _without(copy[head], rest)
    else:
        del copy[head]
    return copy
