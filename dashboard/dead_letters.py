"""The dead-letter stream as the dashboard handles it: list, inspect, requeue, discard.

Every read is bounded (XREVRANGE/XRANGE with COUNT), and so is every parse: a dead letter
is attacker-controlled, so its JSON is read only up to PARSE_BYTES and with a bounded
depth (pydantic-core's parser refuses deep nesting with a ValueError, where ``json`` would
recurse), and anything else is shown as text, cut at SHOW_CHARS. An event the worker kept
truncated (it was over AUDITQ_MAX_EVENT_BYTES) can be inspected and discarded, never
requeued: what is left of it is not the event. Requeue sends the original event JSON
through ``ShardedQueue.enqueue`` (the bounded script and shard choice producers use, with
``on_full="reject"``), then XDELs the dead entry. An event that came without an ``id``
gets the one the worker derived from its original stream entry id and shard (and that
entry's time), so requeueing cannot create a second row for an event that was in fact
stored.

With AUDITQ_SHARDS each shard has its own dead-letter stream (it is written in the same
transaction as the shard's ack); every function takes the ``shard`` to work on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import pydantic_core

from auditq.decoding import derived_id, entry_time
from auditq.keys import Keys, shard_prefix
from dashboard.resources import Resources

PAGE_SIZE = 50
CHUNK = 100  # requeue-all: entries per round trip
MAX_REQUEUE_ALL = 10_000  # per request; the page says how many remain
ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
PARSE_BYTES = 1_048_576  # the largest AUDITQ_MAX_EVENT_BYTES; larger is never an event
SHOW_CHARS = 65_536  # of an event's text on the detail page


class NotFound(LookupError):
    pass


class Truncated(ValueError):
    """Only the start of this event was kept; requeueing it would send a fragment."""


@dataclass
class DeadLetter:
    id: str
    event_raw: str
    reason: str
    entry_id: str | None
    deliveries: int | None
    dead_at: datetime | None
    event: dict[str, Any] | None  # the parsed JSON object, None if it is not one
    size: int  # bytes of the event as it was dead-lettered
    truncated: bool  # only the first bytes were kept (it was over the size cap)
    shard: int = 0  # whose dead-letter stream it is in

    @property
    def action(self) -> str | None:
        value = (self.event or {}).get("action")
        return value if isinstance(value, str) else None

    @property
    def tenant_id(self) -> str | None:
        """Chooses the shard it is requeued to (AUDITQ_SHARDS), as for any event."""
        value = (self.event or {}).get("tenant_id")
        return value if isinstance(value, str) else None

    @property
    def event_id(self) -> str | None:
        value = (self.event or {}).get("id")
        return value if isinstance(value, str) and "\x00" not in value else None

    @cached_property
    def _full_text(self) -> str:
        if self.event is None:
            return self.event_raw
        return json.dumps(self.event, indent=2, ensure_ascii=False, sort_keys=True)

    @property
    def pretty(self) -> str:
        """The event for the detail page: indented when parsed, at most SHOW_CHARS."""
        return self._full_text[:SHOW_CHARS]

    @property
    def cut(self) -> bool:
        """Whether the page shows less than the whole event."""
        return self.truncated or len(self._full_text) > SHOW_CHARS


def valid_id(entry_id: str) -> bool:
    return bool(ENTRY_ID.match(entry_id or ""))


def _text(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def _number(raw: bytes | None) -> int | None:
    return int(raw) if raw and raw.isdigit() and len(raw) < 20 else None


def dead_key(res: Resources, shard: int) -> str:
    return Keys(shard_prefix(res.keys.prefix, shard)).dead


def parse(entry_id: bytes | str, fields: dict[bytes, bytes], shard: int = 0) -> DeadLetter:
    raw = _text(fields.get(b"event")) or ""
    event = None
    truncated = fields.get(b"truncated") == b"1"
    if not truncated and len(raw) <= PARSE_BYTES:
        try:
            event = pydantic_core.from_json(raw)
        except ValueError:  # not JSON, or nested too deep to be an event
            event = None
    dead_at = _number(fields.get(b"dead_at"))
    return DeadLetter(
        id=_text(entry_id) or "",
        event_raw=raw,
        reason=_text(fields.get(b"reason")) or "",
        entry_id=_text(fields.get(b"entry_id")),
        deliveries=_number(fields.get(b"deliveries")),
        dead_at=_time(dead_at) if dead_at is not None else None,
        event=event if isinstance(event, dict) else None,
        size=_number(fields.get(b"event_bytes")) or len(fields.get(b"event") or b""),
        truncated=truncated,
        shard=shard,
    )


def _time(ms: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def page(
    res: Resources, before: str | None = None, shard: int = 0
) -> tuple[list[DeadLetter], str | None]:
    """Newest first, PAGE_SIZE at most; returns the letters and the cursor for older ones."""
    high = f"({before}" if before and valid_id(before) else "+"
    raw = res.redis.xrevrange(dead_key(res, shard), max=high, min="-", count=PAGE_SIZE + 1)
    letters = [parse(eid, fields, shard) for eid, fields in raw[:PAGE_SIZE]]
    older = letters[-1].id if len(raw) > PAGE_SIZE else None
    return letters, older


def counts(res: Resources, shards: int) -> list[int]:
    """Dead letters in each shard's stream (one pipelined round trip)."""
    pipe = res.redis.pipeline(transaction=False)
    for shard in range(shards):
        pipe.xlen(dead_key(res, shard))
    return pipe.execute()


def get(res: Resources, entry_id: str, shard: int = 0) -> DeadLetter:
    if not valid_id(entry_id):
        raise NotFound(entry_id)
    raw = res.redis.xrange(dead_key(res, shard), min=entry_id, max=entry_id, count=1)
    if not raw:
        raise NotFound(entry_id)
    ((found, fields),) = raw
    return parse(found, fields, shard)


def payload(letter: DeadLetter) -> tuple[str, str]:
    """(category, event JSON) to enqueue again."""
    if letter.truncated:
        raise Truncated(letter.id)
    if letter.event is None:
        return "normal", letter.event_raw  # the worker will say again what is wrong with it
    event = dict(letter.event)
    if letter.entry_id and valid_id(letter.entry_id):
        event.setdefault("id", str(derived_id(letter.entry_id, letter.shard)))
        event.setdefault("occurred_at", entry_time(letter.entry_id).isoformat())
    category = "critical" if event.get("category") == "critical" else "normal"
    return category, json.dumps(event, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Requeued:
    moved: list[tuple[DeadLetter, str]] = field(default_factory=list)  # (letter, new entry id)
    queue_full: bool = False
    remaining: bool = False  # requeue-all stopped at its per-request cap
    truncated: int = 0  # letters left in place because only their start was kept


def requeue(res: Resources, entry_id: str, shard: int = 0) -> Requeued:
    letter = get(res, entry_id, shard)
    (new_id,) = res.queue.enqueue([payload(letter)], [letter.tenant_id], on_full="reject")
    if new_id is None:
        return Requeued(queue_full=True)
    res.redis.xdel(dead_key(res, shard), letter.id)
    return Requeued(moved=[(letter, new_id)])


def requeue_chunks(res: Resources, limit: int = MAX_REQUEUE_ALL, shard: int = 0):
    """Requeue-all, one chunk at a time (yields a Requeued per chunk).

    Only entries that were dead when it started are moved (ones that die again meanwhile
    wait for the next click), at most ``limit`` per call; stops when the queue is full.
    """
    dead = dead_key(res, shard)
    newest = res.redis.xrevrange(dead, count=1)
    if not newest:
        return
    stop = _text(newest[0][0])
    start = "-"
    done = 0
    while done < limit:
        raw = res.redis.xrange(dead, min=start, max=stop, count=min(CHUNK, limit - done))
        if not raw:
            return
        read = [parse(eid, fields, shard) for eid, fields in raw]
        start = "(" + read[-1].id
        letters = [letter for letter in read if not letter.truncated]
        payloads = [payload(letter) for letter in letters]
        tenants = [letter.tenant_id for letter in letters]
        new_ids = res.queue.enqueue(payloads, tenants, on_full="reject") if payloads else []
        chunk = Requeued(
            moved=[(lt, nid) for lt, nid in zip(letters, new_ids, strict=True) if nid is not None],
            truncated=len(read) - len(letters),
        )
        if chunk.moved:
            res.redis.xdel(dead, *[lt.id for lt, _ in chunk.moved])
        done += len(read)
        if len(chunk.moved) < len(letters):
            chunk.queue_full = True
            yield chunk
            return
        if done >= limit:
            chunk.remaining = bool(res.redis.xrange(dead, min=start, max=stop, count=1))
        yield chunk


def discard(res: Resources, entry_id: str, shard: int = 0) -> DeadLetter:
    letter = get(res, entry_id, shard)
    if not res.redis.xdel(dead_key(res, shard), letter.id):
        raise NotFound(entry_id)  # someone else got there first
    return letter
