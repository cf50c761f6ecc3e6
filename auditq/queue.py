"""The queue: one Redis stream of events, read by a consumer group, plus a dead-letter stream.

Producer side: ``enqueue`` runs ``lua/enqueue.lua`` (bounded, atomic, counted).
Consumer side: the worker reads with XREADGROUP, acks and removes (``lua/ack.lua``) only
after the database commit, reclaims what dead workers held (XAUTOCLAIM) and dead-letters
what cannot be stored.

The wire format is public (README): one entry per event, one field ``event`` holding the
event as a JSON object.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from auditq.keys import GROUP, Keys
from auditq.producer import enqueue_call, entry_ids
from auditq.redact import DEFAULT_KEY_SET, redact_raw

ENQUEUE_LUA = (Path(__file__).parent / "lua" / "enqueue.lua").read_text()
ACK_LUA = (Path(__file__).parent / "lua" / "ack.lua").read_text()
REASON_CHARS = 2000  # a dead letter's reason, at most
FAILURE_TTL = 7 * 86_400  # seconds a remembered failure outlives its last update
TRUNCATED_KEEP = 4096  # bytes kept of an oversized dead event: enough to tell what it was


def connect(url: str, timeout: float | None = None, **kwargs) -> redis.Redis:
    """A Redis client with bounded waits and no silent retries; a ``RedisCluster`` when
    ``url`` names any node of a Redis Cluster (the same commands, routed by key slot).

    ``rediss://`` on Heroku presents a self-signed certificate, so it is not verified
    (the connection is still encrypted); a URL may override with ``ssl_cert_reqs``.
    """
    options = _options(url, timeout, Retry, kwargs)
    if is_cluster(url, options):
        return redis.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def connect_async(url: str, timeout: float | None = None, **kwargs) -> redis.asyncio.Redis:
    """The same client for asyncio (AsyncAuditClient).

    Cluster detection is one blocking probe here, at construction, bounded by ``timeout``;
    the cluster client itself connects on first use.
    """
    options = _options(url, timeout, AsyncRetry, kwargs)
    if is_cluster(url, _options(url, timeout, Retry, kwargs)):
        return redis.asyncio.RedisCluster.from_url(url, **options)
    return redis.asyncio.Redis.from_url(url, **options)


def is_cluster(url: str, options: dict | None = None) -> bool:
    """Whether the server at ``url`` runs in cluster mode (``INFO cluster``, which every
    Redis answers). Unreachable: False, so a producer still starts while Redis is down
    (and fails fast per call, as without a cluster)."""
    try:
        with redis.Redis.from_url(url, **(options or {})) as probe:
            return bool(probe.info("cluster").get("cluster_enabled"))
    except redis.RedisError:
        return False


def _options(url: str, timeout: float | None, retry: type, kwargs: dict) -> dict:
    options = dict(kwargs)
    if timeout is not None:
        options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        # redis-py retries failed commands by default; a producer with a latency bound
        # must fail fast instead and let its caller decide.
        options["retry"] = retry(NoBackoff(), 0)
    if url.startswith("rediss://") and "ssl_cert_reqs" not in url:
        options.setdefault("ssl_cert_reqs", None)
    return options


@dataclass(slots=True)
class Entry:
    """One stream entry as the worker sees it (not frozen: the worker builds one per entry,
    and a frozen dataclass costs three times as much to build)."""

    id: str
    fields: dict[bytes, bytes]
    deliveries: int = 1


@dataclass(frozen=True)
class Depth:
    length: int
    dead: int
    lag: float  # seconds since the oldest queued event was added
    lengths: tuple[int, ...] = ()  # per shard (AUDITQ_SHARDS), shard 0 first
    deads: tuple[int, ...] = ()


class Queue:
    """One stream (one shard of the queue; shard 0 when AUDITQ_SHARDS is 1)."""

    def __init__(self, client: redis.Redis, keys: Keys, max_len: int, shard: int = 0):
        self.redis = client
        self.keys = keys
        self.max_len = max_len
        self.shard = shard  # events without an id get one derived from (entry id, shard)
        self._enqueue = client.register_script(ENQUEUE_LUA)

    # --- producer side ------------------------------------------------------------------

    def enqueue(
        self, items: list[tuple[str, str]], on_full: Literal["drop", "reject"] = "drop"
    ) -> list[str | None]:
        """Add (category, event JSON) pairs; return entry ids, None where the queue was full."""
        keys, args = enqueue_call(self.keys, self.max_len, items, on_full)
        return entry_ids(self._enqueue(keys=keys, args=args))

    def length(self) -> int:
        return self.redis.xlen(self.keys.stream)

    # --- consumer side ------------------------------------------------------------------

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def read(self, consumer: str, count: int, block_ms: int | None = None) -> list[Entry]:
        """New entries for this consumer (they become pending until acked)."""
        reply = self.redis.xreadgroup(
            GROUP, consumer, {self.keys.stream: ">"}, count=count, block=block_ms
        )
        if not reply:
            return []
        return [Entry(_id(eid), fields) for eid, fields in reply[0][1] if fields]

    def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries another consumer has held too long; with their delivery counts.

        One XAUTOCLAIM call scans only about 10 x count pending entries: the cursor is
        followed to the end, or entries behind a live worker's long batch are never reached.
        """
        claimed: list[tuple[str, dict[bytes, bytes]]] = []
        cursor: bytes | str = "0-0"
        while len(claimed) < count:
            cursor, batch, *_ = self.redis.xautoclaim(
                self.keys.stream, GROUP, consumer, min_idle_time=min_idle_ms,
                start_id=cursor, count=count - len(claimed),
            )  # fmt: skip
            claimed += [(_id(eid), fields) for eid, fields in batch if fields]
            if _id(cursor) == "0-0":
                break
        if not claimed:
            return []
        counts = self.delivery_counts(consumer, [eid for eid, _ in claimed])
        return [Entry(eid, fields, counts.get(eid, 1)) for eid, fields in claimed]

    def delivery_counts(self, consumer: str, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        pending = self.redis.xpending_range(
            self.keys.stream,
            GROUP,
            min=min(ids, key=_order),
            max=max(ids, key=_order),
            count=len(ids) * 2,
            consumername=consumer,
        )
        return {_id(p["message_id"]): p["times_delivered"] for p in pending}

    def ack(
        self,
        ids: list[str],
        pipe: redis.client.Pipeline | None = None,
        *,
        noted: list[str] | None = None,
    ) -> None:
        """Done with these entries (after the commit): ack them and remove them from the
        stream, in one step (``lua/ack.lua``: it trims rather than deletes where it can).

        ``noted``: those of them that may have a failure noted (``remember_failure``), to
        forget with them; None for all. Only an entry delivered before can have one (a
        stale note of a stream since recreated expires with FAILURE_TTL), so the drain
        names its redelivered entries only: an HDEL of every id costs as much as the XACK.
        """
        if not ids:
            return
        target = pipe if pipe is not None else self.redis.pipeline(transaction=True)
        # EVAL, not EVALSHA: in a MULTI, a script Redis has forgotten (a restart, a
        # failover) would fail alone at EXEC while the rest of the transaction ran. As a
        # plain command: redis-py's cluster pipeline has no eval() of its own.
        target.execute_command("EVAL", ACK_LUA, 1, self.keys.stream, GROUP, *ids)
        forget = ids if noted is None else noted
        if forget:
            target.hdel(self.keys.failures, *forget)
        if pipe is None:
            target.execute()

    def renew(self, consumer: str, ids: list[str]) -> None:
        """Reset the idle time of entries this consumer still holds (a lease renewal).

        A worker retrying through a store outage calls this so that other workers do not
        reclaim its batch; JUSTID leaves the delivery counts alone, so an outage never
        pushes entries towards the dead-letter stream.
        """
        if ids:
            self.redis.xclaim(self.keys.stream, GROUP, consumer, 0, ids, justid=True)

    def remember_failure(self, ids: list[str], reason: str) -> None:
        """Note why these entries were left pending; the first reason noted wins.

        An entry that keeps failing is dead-lettered by reclaim after max_deliveries; its
        dead letter then says what went wrong, not only how often it was delivered.
        """
        if ids:
            pipe = self.redis.pipeline(transaction=False)
            for entry_id in ids:
                pipe.hsetnx(self.keys.failures, entry_id, reason[:REASON_CHARS])
            pipe.expire(self.keys.failures, FAILURE_TTL)
            pipe.execute()

    def first_failures(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        reasons = self.redis.hmget(self.keys.failures, ids)
        return {i: r.decode(errors="replace") for i, r in zip(ids, reasons, strict=True) if r}

    def dead_letter(
        self,
        entries: list[tuple[Entry, str]],
        pipe: redis.client.Pipeline | None = None,
        *,
        max_bytes: int,
        redact_keys: frozenset[str] = DEFAULT_KEY_SET,
    ) -> None:
        """Move entries to the dead-letter stream with their reasons, then ack them.

        An event over ``max_bytes`` (AUDITQ_MAX_EVENT_BYTES) can never be stored, so only
        its first TRUNCATED_KEEP bytes are kept, for inspection, with its size noted. The
        entry was refused before its secrets were redacted, so they are redacted here.
        """
        if not entries:
            return
        target = pipe if pipe is not None else self.redis.pipeline(transaction=True)
        for entry, reason in entries:
            target.xadd(self.keys.dead, _dead_fields(entry, reason, max_bytes, redact_keys))
        self.ack([entry.id for entry, _ in entries], target)
        if pipe is None:
            target.execute()


def age_of_first(xrange_reply: list, now: float | None = None) -> float:
    """The lag: seconds since the entry in an ``XRANGE stream - + COUNT 1`` reply was added.

    For callers that read it in a pipeline of their own (dashboard, metrics, alerts).
    """
    if not xrange_reply:
        return 0.0
    added_ms = int(_id(xrange_reply[0][0]).split("-", 1)[0])
    return max(0.0, (time.time() if now is None else now) - added_ms / 1000)


def _dead_fields(
    entry: Entry, reason: str, max_bytes: int, redact_keys: frozenset[str]
) -> dict[str, str | bytes | int]:
    event = entry.fields.get(b"event")
    if event is None:  # keep whatever the producer sent, readable, for inspection
        event = json.dumps({_text(k): _text(v) for k, v in entry.fields.items()}).encode()
    event = redact_raw(event, redact_keys, max_bytes)
    fields: dict[str, str | bytes | int] = {
        "event": event,
        "reason": reason[:REASON_CHARS],
        "entry_id": entry.id,
        "deliveries": entry.deliveries,
        "dead_at": int(time.time() * 1000),
    }
    if len(event) > max_bytes:
        fields |= {"event": event[:TRUNCATED_KEEP], "event_bytes": len(event), "truncated": 1}
    return fields


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace")


def _id(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _order(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-", 1)
    return int(ms), int(seq)
