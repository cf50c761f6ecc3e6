"""The dead-letter stream as the dashboard handles it: list, inspect, requeue, discard.

Every read is bounded (XREVRANGE/XRANGE with COUNT). Requeue sends the original event JSON
through ``Queue.enqueue`` (the same bounded script producers use, ``on_full="reject"``),
then XDELs the dead entry. An event that came without an ``id`` gets the one the worker
derived from its original stream entry id (and that entry's time), so requeueing cannot
create a second row for an event that was in fact stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from auditq.events import derived_id, entry_time
from dashboard.resources import Resources

PAGE_SIZE = 50
CHUNK = 100  # requeue-all: entries per round trip
MAX_REQUEUE_ALL = 10_000  # per request; the page says how many remain
ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


class NotFound(LookupError):
    pass


@dataclass
class DeadLetter:
    id: str
    event_raw: str
    reason: str
    entry_id: str | None
    deliveries: int | None
    dead_at: datetime | None
    event: dict[str, Any] | None  # the parsed JSON object, None if it is not one

    @property
    def action(self) -> str | None:
        value = (self.event or {}).get("action")
        return value if isinstance(value, str) else None

    @property
    def event_id(self) -> str | None:
        value = (self.event or {}).get("id")
        return value if isinstance(value, str) else None

    @property
    def pretty(self) -> str:
        if self.event is None:
            return self.event_raw
        return json.dumps(self.event, indent=2, ensure_ascii=False, sort_keys=True)


def valid_id(entry_id: str) -> bool:
    return bool(ENTRY_ID.match(entry_id or ""))


def _text(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


def parse(entry_id: bytes | str, fields: dict[bytes, bytes]) -> DeadLetter:
    raw = _text(fields.get(b"event")) or ""
    try:
        event = json.loads(raw)
    except ValueError:
        event = None
    dead_at = fields.get(b"dead_at")
    deliveries = fields.get(b"deliveries")
    return DeadLetter(
        id=_text(entry_id) or "",
        event_raw=raw,
        reason=_text(fields.get(b"reason")) or "",
        entry_id=_text(fields.get(b"entry_id")),
        deliveries=int(deliveries) if deliveries and deliveries.isdigit() else None,
        dead_at=datetime.fromtimestamp(int(dead_at) / 1000, UTC)
        if dead_at and dead_at.isdigit()
        else None,
        event=event if isinstance(event, dict) else None,
    )


def page(res: Resources, before: str | None = None) -> tuple[list[DeadLetter], str | None]:
    """Newest first, PAGE_SIZE at most; returns the letters and the cursor for older ones."""
    high = f"({before}" if before and valid_id(before) else "+"
    raw = res.redis.xrevrange(res.keys.dead, max=high, min="-", count=PAGE_SIZE + 1)
    letters = [parse(eid, fields) for eid, fields in raw[:PAGE_SIZE]]
    older = letters[-1].id if len(raw) > PAGE_SIZE else None
    return letters, older


def get(res: Resources, entry_id: str) -> DeadLetter:
    if not valid_id(entry_id):
        raise NotFound(entry_id)
    raw = res.redis.xrange(res.keys.dead, min=entry_id, max=entry_id, count=1)
    if not raw:
        raise NotFound(entry_id)
    return parse(*raw[0])


def payload(letter: DeadLetter) -> tuple[str, str]:
    """(category, event JSON) to enqueue again."""
    if letter.event is None:
        return "normal", letter.event_raw  # the worker will say again what is wrong with it
    event = dict(letter.event)
    if letter.entry_id and valid_id(letter.entry_id):
        event.setdefault("id", str(derived_id(letter.entry_id)))
        event.setdefault("occurred_at", entry_time(letter.entry_id).isoformat())
    category = "critical" if event.get("category") == "critical" else "normal"
    return category, json.dumps(event, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Requeued:
    moved: list[tuple[DeadLetter, str]] = field(default_factory=list)  # (letter, new entry id)
    queue_full: bool = False
    remaining: bool = False  # requeue-all stopped at its per-request cap


def requeue(res: Resources, entry_id: str) -> Requeued:
    letter = get(res, entry_id)
    (new_id,) = res.queue.enqueue([payload(letter)], on_full="reject")
    if new_id is None:
        return Requeued(queue_full=True)
    res.redis.xdel(res.keys.dead, letter.id)
    return Requeued(moved=[(letter, new_id)])


def requeue_chunks(res: Resources, limit: int = MAX_REQUEUE_ALL):
    """Requeue-all, one chunk at a time (yields a Requeued per chunk).

    Only entries that were dead when it started are moved (ones that die again meanwhile
    wait for the next click), at most ``limit`` per call; stops when the queue is full.
    """
    newest = res.redis.xrevrange(res.keys.dead, count=1)
    if not newest:
        return
    stop = _text(newest[0][0])
    start = "-"
    done = 0
    while done < limit:
        raw = res.redis.xrange(res.keys.dead, min=start, max=stop, count=min(CHUNK, limit - done))
        if not raw:
            return
        letters = [parse(eid, fields) for eid, fields in raw]
        new_ids = res.queue.enqueue([payload(letter) for letter in letters], on_full="reject")
        chunk = Requeued(
            moved=[(lt, nid) for lt, nid in zip(letters, new_ids, strict=True) if nid is not None]
        )
        if chunk.moved:
            res.redis.xdel(res.keys.dead, *[lt.id for lt, _ in chunk.moved])
        done += len(chunk.moved)
        start = "(" + letters[-1].id
        if len(chunk.moved) < len(letters):
            chunk.queue_full = True
            yield chunk
            return
        if done >= limit:
            chunk.remaining = bool(res.redis.xrange(res.keys.dead, min=start, max=stop, count=1))
        yield chunk


def discard(res: Resources, entry_id: str) -> DeadLetter:
    letter = get(res, entry_id)
    if not res.redis.xdel(res.keys.dead, letter.id):
        raise NotFound(entry_id)  # someone else got there first
    return letter
