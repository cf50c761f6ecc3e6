"""``AsyncAuditClient``: ``AuditClient`` for asyncio apps (FastAPI, aiohttp, workers).

Same API, same outcomes, same enqueue script; every decision comes from ``auditq.producer``,
which the sync client uses too. Only the I/O differs:
- Redis through ``redis.asyncio``, with the same ``AUDITQ_REDIS_TIMEOUT`` and no retries;
- the direct write (critical events, ``overflow=direct``) runs the sync store in a worker
  thread, bounded by ``AUDITQ_DIRECT_TIMEOUT``. Why a thread rather than an async driver:
  the stores are one tested implementation (contract suite) each, direct writes are rare
  (critical events, a full queue), and both stores are thread-safe (the Postgres one
  serialises on its connection, the Supabase one is an httpx client); a second, async copy
  of each store would be twice the code for a path that is not hot.

Normal events of concurrent ``log()`` calls are coalesced: calls made while a script call
is in flight ride together on the next one (one round trip, one connection), with at most
``_IN_FLIGHT`` script calls at a time. Under asyncio concurrency that is what keeps the
connection count and the per-event cost low; each caller still gets its own outcomes and a
lone call goes out at once.

The event loop is never blocked: validation is pure CPU (microseconds), and nothing waits
on a socket or a lock outside ``await``. A client belongs to the event loop it is first
used in (redis.asyncio's connections do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

from auditq import producer
from auditq.config import Settings, load_settings
from auditq.events import AuditEvent, event_row
from auditq.keys import Keys, shard_keys
from auditq.pii.writer import Sealer, sealer
from auditq.producer import Batch, Decision, LogResult
from auditq.queue import ENQUEUE_LUA, connect_async
from auditq.shards import RECORD_LUA, check_prefix
from auditq.stats import Stats
from auditq.stores import Store, StoreError, open_store

_IN_FLIGHT = 4  # concurrent script calls carrying coalesced normal events
_COALESCE_MAX = 500  # events per coalesced call: well inside AUDITQ_REDIS_TIMEOUT


@dataclass
class _Waiting:
    """One log_many call's normal events (``indexes`` of its batch), waiting for a
    coalesced script call."""

    batch: Batch
    indexes: list[int]
    done: asyncio.Future[list[Decision]]


class AsyncAuditClient:
    def __init__(
        self,
        settings: Settings,
        redis_client: redis.asyncio.Redis | None = None,
        store: Store | None = None,
    ):
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.redis = redis_client or connect_async(
            settings.redis_url, timeout=settings.redis_timeout
        )
        check_prefix(self.redis, settings.prefix)
        self._script = self.redis.register_script(ENQUEUE_LUA)
        self._shards = shard_keys(settings.prefix, settings.shards)
        self._bound = producer.shard_bound(settings.max_queue, settings.shards)
        self._picker = producer.ShardPicker(settings.shards)
        self._recorded = settings.shards == 1  # as ShardedQueue: noted on the first enqueue
        # Stats only fills pipelines here (``incr(..., pipe=...)``); this client executes them.
        self._stats = Stats(self.redis, self.keys)
        self._store = store
        self._store_opened = store is not None
        self._sealer: Sealer | None = None
        self._store_lock = asyncio.Lock()
        self._unsent = producer.Unsent()
        self.warnings = producer.WarnEvery()
        self._waiting: list[_Waiting] = []
        self._sending = 0  # coalesced script calls in flight or scheduled

    @classmethod
    def from_env(cls) -> AsyncAuditClient:
        return cls(load_settings())

    async def __aenter__(self) -> AsyncAuditClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- public API ------------------------------------------------------------------------

    async def log(self, action: str, **fields: Any) -> LogResult:
        return (await self.log_many([{"action": action, **fields}]))[0]

    async def log_many(self, events: Iterable[dict[str, Any] | AuditEvent]) -> list[LogResult]:
        """Validate all, then enqueue the normal ones in one round trip.

        Raises EventError (naming the field) before anything is sent if any event is invalid.
        """
        batch = Batch.of(events, self.settings.max_event_bytes, self.settings.redact_key_set)
        for critical, indexes in batch.groups():
            if critical:
                batch.decide(indexes, await self._critical(*batch.pick(indexes)))
            else:
                batch.decide(indexes, await self._coalesced(batch, indexes))
        return batch.results()

    async def aclose(self) -> None:
        # Counts held since a Redis failure get one last try (one timeout at most).
        self._unsent.retry_now()
        await self._count(self._unsent.take())
        await self.redis.aclose()
        if self._store is not None:
            await asyncio.to_thread(self._store.close)

    # --- Redis -----------------------------------------------------------------------------

    async def _enqueue(
        self,
        category: str,
        payloads: list[str],
        tenants: list[str | None],
        on_full: producer.OnFull = "drop",
    ) -> list[str | None]:
        """The sync client's ``ShardedQueue.enqueue``: the same rounds, awaited."""
        items = [(category, p) for p in payloads]
        first = self._picker.pick(tenants)
        spill = producer.Spill(first, len(self._shards), on_full)
        while calls := spill.calls():
            for shard, indexes, mode in calls:
                picked = [items[i] for i in indexes]
                keys, args = producer.enqueue_call(self._shards[shard], self._bound, picked, mode)
                spill.record(indexes, producer.entry_ids(await self._script(keys=keys, args=args)))
        if not self._recorded:
            await self.redis.eval(RECORD_LUA, 1, self.keys.shards, len(self._shards))
            self._recorded = True
        return spill.ids

    async def _count(self, counts: dict[str, int]) -> None:
        """Count in Redis; if Redis is down, remember and add it on the next success."""
        if not counts or self._unsent.hold(counts):
            return
        pipe = self.redis.pipeline(transaction=False)
        self._stats.incr(counts, pipe=pipe)
        try:
            await pipe.execute()
        except RedisError:
            self._unsent.redis_failed(counts)

    # --- normal events ------------------------------------------------------------------------

    async def _coalesced(self, batch: Batch, indexes: list[int]) -> list[Decision]:
        if not self._sending:  # nothing in flight: a lone call goes out itself, no task hop
            self._sending += 1
            try:
                return await self._normal([(batch, indexes)])
            finally:
                self._sending -= 1
                self._start_sender()
        waiting = _Waiting(batch, indexes, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._start_sender()
        return await waiting.done

    def _start_sender(self) -> None:
        if self._waiting and self._sending < _IN_FLIGHT:
            self._sending += 1
            asyncio.get_running_loop().create_task(self._send_waiting())

    async def _send_waiting(self) -> None:
        """Send what waits, in calls of up to _COALESCE_MAX events, until nothing waits."""
        try:
            while self._waiting:
                taken, size = 0, 0
                while taken < len(self._waiting) and size < _COALESCE_MAX:
                    size += len(self._waiting[taken].indexes)
                    taken += 1
                group, self._waiting = self._waiting[:taken], self._waiting[taken:]
                try:
                    decisions = await self._normal([(w.batch, w.indexes) for w in group])
                except BaseException as error:  # a bug or a cancellation: every caller hears it
                    for w in group:
                        if not w.done.done():
                            w.done.set_exception(error)
                    raise
                for w in group:
                    mine, decisions = decisions[: len(w.indexes)], decisions[len(w.indexes) :]
                    if not w.done.done():  # its caller may have been cancelled
                        w.done.set_result(mine)
        finally:
            self._sending -= 1

    async def _normal(self, parts: list[tuple[Batch, list[int]]]) -> list[Decision]:
        """Enqueue the normal events of one or more calls (each a batch and the indexes of
        its normal events): their payloads and tenants; an event itself is built only for
        a direct write (overflow=direct)."""
        policy = self.settings.overflow
        payloads = [p for batch, indexes in parts for p in batch.payloads(indexes)]
        tenants = [t for batch, indexes in parts for t in batch.tenants(indexes)]
        try:
            ids = await self._enqueue("normal", payloads, tenants, producer.on_full(policy))
            if policy == "block":
                await self._block(payloads, tenants, ids)
        except RedisError as error:
            self._unsent.redis_failed()
            decisions, counts = producer.redis_down(len(payloads), error, self.warnings)
            await self._count(counts)
            return decisions
        self.warnings.flush(producer.REDIS_DOWN)
        await self._count(self._unsent.take())
        no_room = producer.full(ids)
        written = False
        if no_room and policy == "direct":
            where = [(batch, i) for batch, indexes in parts for i in indexes]
            written = await self._direct([where[k][0].event(where[k][1]) for k in no_room])
        decisions, counts = producer.normal_decisions(ids, policy, written)
        await self._count(counts)
        return decisions

    async def _block(
        self, payloads: list[str], tenants: list[str | None], ids: list[str | None]
    ) -> None:
        """overflow=block: retry the events that found no room until AUDITQ_BLOCK_TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.block_timeout
        while (waiting := producer.full(ids)) and loop.time() < deadline:
            await asyncio.sleep(producer.BLOCK_POLL)
            retried = await self._enqueue(
                "normal", [payloads[i] for i in waiting], [tenants[i] for i in waiting], "reject"
            )
            producer.fill(ids, waiting, retried)

    # --- critical events ----------------------------------------------------------------------

    async def _critical(self, events: list[AuditEvent], payloads: list[str]) -> list[Decision]:
        if await self._direct(events):
            return producer.written(len(events))
        try:
            await self._enqueue("critical", payloads, [e.tenant_id for e in events])
        except RedisError as error:
            self._unsent.redis_failed()
            raise producer.unavailable(len(events)) from error
        decisions, counts = producer.deferred(len(events))
        await self._count(counts)
        return decisions

    async def _direct(self, events: list[AuditEvent]) -> bool:
        """Write to the store in a worker thread, waiting at most AUDITQ_DIRECT_TIMEOUT.

        Past the timeout the thread may still commit; the caller then queues the event as
        well, and the store's idempotent insert on ``id`` keeps it to one row.
        """
        store = await self._open_store()
        if store is None:
            return False
        failure: Exception | None = None
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self._insert, store, events),
                self.settings.direct_timeout,
            )
        except (StoreError, TimeoutError) as error:
            failure = error if isinstance(error, StoreError) else StoreError("timed out")
        await self._count(producer.direct_counts(len(events), failure, self.warnings))
        return failure is None

    def _insert(self, store: Store, events: list[AuditEvent]) -> int:
        """The direct write, on a worker thread: personal fields to ciphertext first
        (auditq/pii; the key lookup is I/O too), one key cache per client."""
        if self._sealer is None:
            self._sealer = sealer(self.settings, store)
        rows = [event_row(event, "direct") for event in events]
        return store.insert_rows(self._sealer(rows))

    async def _open_store(self) -> Store | None:
        async with self._store_lock:
            if not self._store_opened:
                # Opening may resolve names or build clients: kept off the event loop too.
                self._store = await asyncio.to_thread(
                    open_store, self.settings, self.settings.direct_timeout
                )
                self._store_opened = True
            return self._store
