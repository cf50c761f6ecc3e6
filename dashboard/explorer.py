"""The audit-log explorer's request handling: filters from the query string, keyset
cursors, and exports streamed page by page through the store's ``query_events``.

Filter values only ever become bound parameters (postgres) or percent-encoded ``eq.``
values (PostgREST); nothing here builds query text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from auditq.config import Settings
from auditq.pii.reader import Show, reveal
from auditq.stores import MAX_QUERY_LIMIT, QUERY_COLUMNS, Cursor, EventFilters, Store

# What a reader sees of a row: the ciphertext column is put back into the personal fields.
COLUMNS = tuple(c for c in QUERY_COLUMNS if c != "pii")
PAGE_SIZE = 50
EXPORT_PAGE = MAX_QUERY_LIMIT
TEXT_FILTERS = ("action", "actor_type", "actor_id", "target_type", "target_id", "tenant_id")
CHOICES = {"category": ("normal", "critical"), "outcome": ("success", "failure", "denied")}
MAX_VALUE = 256  # the longest value any of these columns holds
# Spreadsheet apps run a cell starting with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Reader:
    """How personal fields read for this request (auditq/pii): decrypted for admins and
    API_TOKEN, ``[hidden]`` for viewers unless AUDITQ_PII_VIEWER_CLEAR."""

    settings: Settings
    show: Show

    @classmethod
    def for_role(cls, settings: Settings, role: str | None) -> Reader:
        """``role`` None: an API_TOKEN caller (the access hook let it in)."""
        hidden = role == "viewer" and not settings.pii_viewer_clear
        return cls(settings, "hidden" if hidden else "clear")

    def rows(self, store: Store, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        reveal(rows, store, self.settings, self.show)
        return rows


@dataclass
class Parsed:
    filters: EventFilters
    values: dict[str, str]  # what the form shows (as typed)
    errors: dict[str, str]


def parse_time(text: str) -> datetime:
    """RFC 3339, or a ``datetime-local`` value (no offset), which is taken as UTC.

    Raises ValueError also for a time whose UTC value Python cannot hold (year 1 at +14:00).
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range in UTC") from None


def parse_filters(args: Mapping[str, str]) -> Parsed:
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    for name in TEXT_FILTERS:
        value = args.get(name, "")
        values[name] = value
        if len(value) > MAX_VALUE:
            errors[name] = f"at most {MAX_VALUE} characters"
        elif "\x00" in value:  # no stored value holds one (auditq/events.py refuses them)
            errors[name] = "must not contain NUL characters"
        elif value:
            kwargs[name] = value
    for name, allowed in CHOICES.items():
        value = args.get(name, "")
        values[name] = value
        if value and value not in allowed:
            errors[name] = "must be one of " + ", ".join(allowed)
        elif value:
            kwargs[name] = value
    for name in ("since", "until"):
        value = args.get(name, "").strip()
        values[name] = value
        if value:
            try:
                kwargs[name] = parse_time(value)
            except ValueError:
                errors[name] = "must be a date and time in years 1 to 9999, e.g. 2026-11-27T09:30"
    return Parsed(EventFilters(**kwargs), values, errors)


def encode_cursor(row: Mapping[str, Any]) -> str:
    return f"{row['occurred_at'].isoformat()}_{row['id']}"


def decode_cursor(text: str | None) -> Cursor | None:
    if not text:
        return None
    try:
        at, _, ident = text.rpartition("_")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            return None
        return moment.astimezone(UTC), UUID(ident)
    except (ValueError, OverflowError):  # OverflowError: out of range once in UTC
        return None


def page(
    store: Store,
    reader: Reader,
    filters: EventFilters,
    before: Cursor | None,
    size: int = PAGE_SIZE,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page and the cursor of the next (None on the last page)."""
    rows = store.query_events(filters, before=before, limit=size + 1)
    more = len(rows) > size
    rows = reader.rows(store, rows[:size])
    return rows, encode_cursor(rows[-1]) if more and rows else None


def iter_rows(store: Store, reader: Reader, filters: EventFilters) -> Iterator[dict[str, Any]]:
    """Every matching row, newest first, in keyset pages (never an OFFSET)."""
    before: Cursor | None = None
    while True:
        rows = store.query_events(filters, before=before, limit=EXPORT_PAGE)
        yield from reader.rows(store, rows)
        if len(rows) < EXPORT_PAGE:
            return
        before = (rows[-1]["occurred_at"], UUID(rows[-1]["id"]))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON-ready values, in COLUMNS order."""
    return {k: _plain(row[k]) for k in COLUMNS}


def ndjson_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(plain_row(row), ensure_ascii=False) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(_plain(value))
    if text.startswith(FORMULA_START):
        return "'" + text  # shown as text, never evaluated (OWASP's CSV-injection advice)
    return text


def csv_lines(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for count, row in enumerate(rows, 1):
        writer.writerow([_cell(row[k]) for k in COLUMNS])
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
