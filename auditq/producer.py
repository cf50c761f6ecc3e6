"""What a producer decides without I/O, shared by ``AuditClient`` and ``AsyncAuditClient``.

The two clients differ only in how they talk to Redis and the store (blocking or awaited);
everything else lives here once: validating a ``log_many`` call, the enqueue script's
arguments and what its reply means, the outcome of each event under each overflow policy,
and the counters a client holds while Redis is down.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from auditq.bulk import EncodedBatch, encode_batch
from auditq.events import AuditEvent
from auditq.keys import Keys
from auditq.stats import MINUTE_TTL, epoch_minute

log = logging.getLogger("auditq.client")

Outcome = Literal["queued", "written", "deferred", "dropped"]
Decision = tuple[Outcome, str | None]  # an outcome and why (for dropped and deferred)
OnFull = Literal["drop", "reject"]

BLOCK_POLL = 0.01  # seconds between retries while waiting for room (overflow=block)
REDIS_RETRY_AFTER = 1.0  # seconds counters stay in memory after a Redis failure
WARN_EVERY = 10.0  # seconds between two warnings for the same reason (a count in between)
REDIS_DOWN = "redis unavailable, normal events dropped"
DIRECT_FAILED = "direct write to the store failed"


class AuditUnavailable(RuntimeError):
    """A critical event could be neither written nor queued; the caller must know."""


class WarnEvery:
    """At most one warning line per ``interval`` seconds per reason, saying how many.

    A producer in an outage fails on every call; one line per call (thousands a second)
    buries the log and costs more than the event. The first failure is logged at once,
    the rest are counted and logged with their count when the interval has passed or
    when things work again (``flush``), so no failure goes unreported.
    """

    def __init__(self, logger: logging.Logger = log, interval: float = WARN_EVERY) -> None:
        self.log = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}  # reason -> when it was last logged
        self._pending: Counter[str] = Counter()
        self._detail: dict[str, str] = {}

    def warn(self, reason: str, count: int, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._pending[reason] += count
            self._detail[reason] = detail
            if now - self._last.get(reason, float("-inf")) < self.interval:
                return
            self._last[reason] = now
            count = self._pending.pop(reason)
        self.log.warning("%s: %d events (%s)", reason, count, detail)

    def flush(self, reason: str) -> None:
        """Log what was counted and not yet logged (call when the failing thing works)."""
        if not self._pending:  # the common case, without the lock
            return
        with self._lock:
            count = self._pending.pop(reason, 0)
            self._last.pop(reason, None)  # the next outage is reported at once
        if count:
            self.log.warning(
                "%s: %d more events before it recovered (%s)", reason, count, self._detail[reason]
            )


@dataclass(frozen=True)
class LogResult:
    id: str
    outcome: Outcome
    reason: str | None = None  # why it was dropped or deferred


# --- one log_many call -----------------------------------------------------------------------


@dataclass
class Batch:
    """The events of one ``log_many`` call, validated, and their results as they come in."""

    encoded: EncodedBatch
    _decisions: list[Decision | None] = field(init=False)

    def __post_init__(self) -> None:
        self._decisions = [None] * len(self.encoded.ids)

    @classmethod
    def of(
        cls,
        events: Iterable[dict[str, Any] | AuditEvent],
        max_bytes: int,
        redact_keys: frozenset[str],
    ) -> Batch:
        """Validate all first: raises EventError (naming the field) before anything is sent;
        secrets are redacted (AUDITQ_REDACT_KEYS) before anything is encoded."""
        return cls(encode_batch(list(events), max_bytes, redact_keys))

    def groups(self) -> Iterator[tuple[bool, list[int]]]:
        """(critical?, indexes) for the normal events, then the critical ones; none empty."""
        categories = self.encoded.categories
        if "critical" not in categories:  # the common case, without a step per event
            yield False, list(range(len(categories)))
            return
        for critical in (False, True):
            wanted = "critical" if critical else "normal"
            indexes = [i for i, category in enumerate(categories) if category == wanted]
            if indexes:
                yield critical, indexes

    def pick(self, indexes: list[int]) -> tuple[list[AuditEvent], list[str]]:
        """These events and their payloads."""
        return [self.event(i) for i in indexes], self.payloads(indexes)

    def payloads(self, indexes: list[int]) -> list[str]:
        return [self.encoded.payloads[i] for i in indexes]

    def tenants(self, indexes: list[int]) -> list[str | None]:
        return [self.encoded.tenants[i] for i in indexes]

    def event(self, i: int) -> AuditEvent:
        """The event itself (built on demand: a normal event's payload is all Redis needs)."""
        return self.encoded.event(i)

    def decide(self, indexes: list[int], decisions: list[Decision]) -> None:
        if len(indexes) == len(self._decisions):  # one group: every event, in order
            self._decisions = list(decisions)
            return
        for i, decision in zip(indexes, decisions, strict=True):
            self._decisions[i] = decision

    def results(self) -> list[LogResult]:
        return [
            LogResult(event_id, *decision)  # type: ignore[misc]  # every event is decided
            for event_id, decision in zip(self.encoded.ids, self._decisions, strict=True)
        ]


# --- the enqueue script ----------------------------------------------------------------------


def enqueue_call(
    keys: Keys, max_len: int, items: list[tuple[str, str]], on_full: OnFull = "drop"
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV for ``lua/enqueue.lua`` adding (category, event JSON) pairs."""
    args: list[str | int] = [max_len, on_full, MINUTE_TTL, *itertools.chain.from_iterable(items)]
    return [keys.stream, keys.counters, keys.minute(epoch_minute())], args


def entry_ids(reply: list) -> list[str | None]:
    """The script's reply: the new entry id per event, None where the stream was full."""
    return [r.decode() if isinstance(r, bytes) else None for r in reply]


def on_full(policy: str) -> OnFull:
    """What the script does at the bound: only ``drop`` lets it drop (and count) by itself."""
    return "drop" if policy == "drop" else "reject"


def full(ids: list[str | None]) -> list[int]:
    """Indexes of the events the stream had no room for."""
    return [i for i, entry_id in enumerate(ids) if entry_id is None]


def fill(ids: list[str | None], waiting: list[int], retried: list[str | None]) -> None:
    """Put the ids a retry got (overflow=block) into their places."""
    for i, entry_id in zip(waiting, retried, strict=True):
        ids[i] = entry_id


# --- shards (AUDITQ_SHARDS) ------------------------------------------------------------------


def shard_bound(max_queue: int, shards: int) -> int:
    """Each shard's bound: AUDITQ_MAX_QUEUE split evenly (so the total stays the setting)."""
    return max(1, max_queue // shards)


def tenant_shard(tenant_id: str, shards: int) -> int:
    """A tenant's shard: CRC-32 of its UTF-8 bytes modulo the shard count. Stable across
    processes and languages (README shows the same in Node.js), so one tenant's events
    stay in one stream, in order."""
    return zlib.crc32(tenant_id.encode()) % shards


class ShardPicker:
    """The first shard each event tries: its tenant's, else the call's turn.

    Events without a tenant take turns per call, not per event, so a ``log_many`` call
    stays one round trip while calls spread evenly over the shards. Each process starts
    at a random turn, so many short-lived producers do not all begin on shard 0.
    """

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self._turns = itertools.count(random.randrange(shards))  # next() is atomic in CPython

    def pick(self, tenants: list[str | None]) -> list[int]:
        if self.shards == 1:
            return [0] * len(tenants)
        turn = next(self._turns) % self.shards
        return [turn if t is None else tenant_shard(t, self.shards) for t in tenants]


class Spill:
    """Rounds of enqueue script calls: an event first tries its shard, and while a shard is
    full the next one, before the overflow policy applies (in the last round only, so an
    event is dropped or refused only when every shard is full).

    Use: ``for shard, indexes, on_full in spill.calls(): spill.record(indexes, ids)`` until
    ``calls()`` is empty; ``spill.ids`` then holds the entry ids (None: no room anywhere).
    With one shard it is exactly one call with the policy's own ``on_full``.
    """

    def __init__(self, first: list[int], shards: int, on_full: OnFull) -> None:
        self.first = first
        self.shards = shards
        self.on_full = on_full
        self.ids: list[str | None] = [None] * len(first)
        self._round = 0

    def calls(self) -> list[tuple[int, list[int], OnFull]]:
        waiting = full(self.ids)
        if not waiting or self._round == self.shards:
            return []
        turn, self._round = self._round, self._round + 1
        mode: OnFull = self.on_full if turn == self.shards - 1 else "reject"
        if self.shards == 1:  # one call, one round: no event to sort
            return [(0, waiting, mode)]
        groups: dict[int, list[int]] = {}
        for i in waiting:
            groups.setdefault((self.first[i] + turn) % self.shards, []).append(i)
        return [(shard, indexes, mode) for shard, indexes in groups.items()]

    def record(self, indexes: list[int], ids: list[str | None]) -> None:
        fill(self.ids, indexes, ids)


# --- outcomes --------------------------------------------------------------------------------


def normal_decisions(
    ids: list[str | None], policy: str, written: bool
) -> tuple[list[Decision], dict[str, int]]:
    """Outcomes of normal events after the script (and, for ``direct``, the direct write of
    the ones that found the stream full: ``written`` says whether it succeeded), and what
    the client must still count (the script counted ``drop``'s drops itself)."""
    no_room = full(ids)
    decisions: list[Decision] = [("queued", None)] * len(ids)
    if not no_room:
        return decisions, {}
    if policy == "direct":
        decision: Decision = ("written", None) if written else ("dropped", "direct_failed")
        counts = {} if written else {"dropped_direct_failed": len(no_room)}
    else:
        decision = ("dropped", "queue_full")
        counts = {"dropped_queue_full": len(no_room)} if policy == "block" else {}
    for i in no_room:
        decisions[i] = decision
    return decisions, counts


def redis_down(
    count: int, error: Exception, warnings: WarnEvery
) -> tuple[list[Decision], dict[str, int]]:
    """Normal events Redis did not take: dropped (a timeout may still have added them)."""
    warnings.warn(REDIS_DOWN, count, type(error).__name__)
    return [("dropped", "redis_unavailable")] * count, {"dropped_redis_unavailable": count}


def written(count: int) -> list[Decision]:
    return [("written", None)] * count


def deferred(count: int) -> tuple[list[Decision], dict[str, int]]:
    """Critical events the store refused and the stream took."""
    return [("deferred", "store_unavailable")] * count, {"deferred": count}


def unavailable(count: int) -> AuditUnavailable:
    return AuditUnavailable(
        f"{count} critical event(s) could be neither written to the store nor queued"
    )


def direct_counts(count: int, error: Exception | None, warnings: WarnEvery) -> dict[str, int]:
    """Counters for a direct write of ``count`` events that failed with ``error`` or not."""
    if error is None:
        warnings.flush(DIRECT_FAILED)
        return {"direct_written": count}
    warnings.warn(DIRECT_FAILED, count, str(error))
    return {"direct_failed": count}


# --- counters while Redis is down --------------------------------------------------------------


class Unsent:
    """Counts that could not reach Redis; added on the next success, or tried once more
    as the client closes.

    Right after a Redis failure counts go straight to memory, so a call never pays the
    Redis timeout twice.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._failed_at = float("-inf")

    def redis_failed(self, counts: dict[str, int] | None = None) -> None:
        self._failed_at = time.monotonic()
        if counts:
            self._counts.update(counts)

    def retry_now(self) -> None:
        """Let the next count try Redis at once: a closing client has no next success."""
        self._failed_at = float("-inf")

    def hold(self, counts: dict[str, int]) -> bool:
        """Keep ``counts`` in memory if Redis failed just now; True when they were kept."""
        if time.monotonic() - self._failed_at < REDIS_RETRY_AFTER:
            self._counts.update(counts)
            return True
        return False

    def take(self) -> dict[str, int]:
        counts, self._counts = dict(self._counts), Counter()
        return counts
