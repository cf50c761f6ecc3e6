"""Secrets out of audit data before anything stores them (AUDITQ_REDACT_KEYS).

A developer who puts a password or a token into an event's metadata by mistake must not
turn the audit log into a second copy of it. Every metadata key, at any depth, whose name
(case-insensitive) is one of the redact keys gets the value ``"[redacted]"`` instead: the
event still records that the field was there, never what it held.

Redaction happens in the event model itself (``auditq.events``), so the Python clients,
the HTTP ingest, direct writes and the worker (which re-validates what producers in other
languages wrote) all apply it before the queue, the table or a log sees the value. Entries
the worker cannot decode are redacted here too before they go to the dead letters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import pydantic_core

REDACTED = "[redacted]"
DEFAULT_KEYS = (
    "password", "passwd", "secret", "token", "access_token", "refresh_token", "authorization",
    "api_key", "apikey", "card_number", "cvv", "ssn",
)  # fmt: skip


def key_set(names: Iterable[str]) -> frozenset[str]:
    """The keys to redact, normalised as they are compared (lower case, no blanks)."""
    return frozenset(name.strip().lower() for name in names if name.strip())


DEFAULT_KEY_SET = key_set(DEFAULT_KEYS)
_NESTED = (dict, list, tuple)  # tuples: the Python client serializes them as JSON arrays


def has_secret(value: Any, keys: frozenset[str]) -> bool:
    """Whether any dict in ``value`` (nested lists and dicts included) has a redact key.

    No depth cut-off: a secret below one would be kept. What it walks is already bounded,
    metadata by the event model (MAX_METADATA_DEPTH) and a raw entry by its parser."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in keys:
                return True
            if isinstance(item, _NESTED) and has_secret(item, keys):
                return True
    elif isinstance(value, list | tuple):
        return any(isinstance(item, _NESTED) and has_secret(item, keys) for item in value)
    return False


def redact(value: Any, keys: frozenset[str]) -> Any:
    """A copy of ``value`` with every redact key's value replaced (callers check
    ``has_secret`` first, so the common case, nothing to redact, copies nothing)."""
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and key.lower() in keys else redact(item, keys)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, keys) for item in value]
    return value


def redact_raw(raw: bytes, keys: frozenset[str], max_bytes: int) -> bytes:
    """An entry the worker could not decode, redacted before it is dead-lettered.

    Parsed with a bounded parser (no recursion past its depth limit); what does not parse
    as JSON has every ``"key": "string"`` pair of a redact key masked in the text instead.
    """
    if keys and len(raw) <= max_bytes:
        try:
            parsed = pydantic_core.from_json(raw)
        except ValueError:
            pass
        else:
            if not has_secret(parsed, keys):
                return raw
            return json.dumps(redact(parsed, keys), ensure_ascii=False).encode()
    return _mask_text(raw, keys) if keys else raw


def _mask_text(raw: bytes, keys: frozenset[str]) -> bytes:
    names = b"|".join(re.escape(k.encode()) for k in sorted(keys))
    # The value: a JSON string, or any other token up to the next separator.
    value = rb'(?:"(?:[^"\\]|\\.)*"|[^,}\]\s]+)'
    pattern = re.compile(rb'("(?i:' + names + rb')"\s*:\s*)' + value)
    return pattern.sub(lambda m: m.group(1) + b'"' + REDACTED.encode() + b'"', raw)
