"""Taking personal fields out of an event, and putting them back into a row read.

A field is ``ip``, ``user_agent`` or ``metadata.<key>``, where dots in ``<key>`` walk into
nested objects (``metadata.customer.email``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from auditq.events import AuditEvent

_MISSING = object()


def _path(name: str) -> list[str]:
    return name.split(".")[1:]


def take(event: AuditEvent, names: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the event's personal values by field name, the updates that remove them).

    Metadata is copied only along the paths that change, so an event without personal
    metadata costs no copy."""
    found: dict[str, Any] = {}
    updates: dict[str, Any] = {}
    metadata = event.metadata
    for name in names:
        if name in ("ip", "user_agent"):
            value = getattr(event, name)
            if value is not None:
                found[name] = value
                updates[name] = None
            continue
        value = _get(metadata, _path(name))
        if value is not _MISSING:
            found[name] = value
            metadata = _without(metadata, _path(name))
    if metadata is not event.metadata:
        updates["metadata"] = metadata
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
