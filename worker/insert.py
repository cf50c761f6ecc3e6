"""One batch of stream entries into the store: decode, insert, isolate poison, ack, count.

Shared by the drain (new entries) and reclaim (entries a dead worker held). Rules:
- An entry is acked (and so removed: auditq/lua/ack.lua) only after the commit that stored
  it; until then it stays pending, so a crash at any point loses nothing (a redelivered row
  is skipped by id).
- Entries that cannot be decoded, and rows the database refuses (``DataRejected``), go to
  the dead-letter stream with the reason; a refused batch is split in halves until the
  refused rows are alone, so every good row around them is stored at once. Any other
  error raised by one entry (decoding it, or inserting a part holding it) is treated the
  same way: only a transient store error may hold a batch back.
- A transient failure (``StoreUnavailable``) retries with backoff, keeps the batch leased
  to this worker, shrinks the adaptive batch size, and re-splits what is left to that size.

Counters (per minute via Stats, and process totals in the heartbeat): ``inserted`` (new
rows), ``duplicates`` (rows already stored), ``batches``, ``failed_batches`` (each attempt
that failed with a transient error), ``retried`` (each retry made), ``dead_lettered``,
``batch_latency_ms_sum`` and the latency histogram (one field per batch); the reclaim
job adds ``reclaimed`` (entries taken over from workers that stopped answering).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from functools import partial

import redis
from tenacity import RetryCallState

from auditq.decoding import decode_rows
from auditq.events import COLUMN, EventError, Row
from auditq.pii.writer import Sealer, as_is
from auditq.queue import Entry, Queue
from auditq.redact import DEFAULT_KEY_SET
from auditq.stats import Stats, latency_field
from auditq.stores import Encoded, Store, StoreError, StoreUnavailable
from worker.backoff import Interrupted, retrying
from worker.batching import AdaptiveBatch, chunk_by_bytes, split
from worker.heartbeat import WorkerStatus

log = logging.getLogger(__name__)

Item = tuple[Entry, Row]
_ID = COLUMN["id"]
SEALED_PART = 1000  # entries decoded, then sealed, at a time (``decode_batch``)


@dataclass
class _Outcome:
    """What happened to one batch so far; flushed to Redis in one round trip at the end."""

    stored: list[Entry] = field(default_factory=list)
    dead: list[tuple[Entry, str]] = field(default_factory=list)
    new_rows: int = 0
    failures: int = 0


@dataclass
class Decoded:
    """A batch read from the stream, decoded: the rows to store, and the entries that failed."""

    entries: list[Entry]
    items: list[Item]
    sizes: list[int]  # each item's payload bytes, for the byte bound and the sizer
    dead: list[tuple[Entry, str]]
    # Personal fields encrypted ahead (``decode_batch``): the insert need not look again.
    sealed: bool = False
    # The insert of all the items, made ahead where the store can (``Store.encode_rows``).
    encoded: Encoded | None = None


def reason(error: Exception) -> str:
    """The dead-letter reason for an error: our own errors say it; others name their type."""
    if isinstance(error, EventError | StoreError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class BatchInserter:
    def __init__(
        self,
        queue: Queue,
        stats: Stats,
        store: Store,
        sizer: AdaptiveBatch,
        status: WorkerStatus,
        *,
        max_event_bytes: int,
        retry_base: float,
        retry_max: float,
        redact_keys: frozenset[str] = DEFAULT_KEY_SET,
        seal: Sealer | None = None,
    ) -> None:
        self.queue = queue
        self.stats = stats
        self.store = store
        self.sizer = sizer
        self.status = status
        self.max_event_bytes = max_event_bytes
        self.redact_keys = redact_keys
        # Personal fields become ciphertext just before each insert (auditq/pii); a key
        # store failure is retried like the insert.
        self.seal: Sealer = seal or as_is
        self.retry_base = retry_base
        self.retry_max = retry_max
        # One batch at a time per process: the drain and reclaim jobs run on separate
        # scheduler threads but share the store connection, the sizer and the counters.
        self.lock = threading.Lock()
        # Entries the drain has read ahead (worker/pipeline.py) while a batch is stored:
        # held by this consumer too, so a retry renews their lease with the batch's.
        self.read_ahead: list[str] = []
        # The acks of the last batch the drain stored, sent on its prefetch thread while the
        # next batch is written (``store_decoded(..., ack_on=)``); ``settle`` waits for them.
        self._acking: Future[None] | None = None

    @property
    def consumer(self) -> str:
        return self.status.id

    def dead_letter(self, dead: list[tuple[Entry, str]], pipe: redis.client.Pipeline) -> None:
        self.queue.dead_letter(
            dead, pipe, max_bytes=self.max_event_bytes, redact_keys=self.redact_keys
        )

    def handle(self, entries: list[Entry], backlog: bool) -> None:
        """Store a batch this consumer holds. Call with ``self.lock`` held."""
        self.store_decoded(self.decode_batch(entries), backlog)

    def decode_batch(self, entries: list[Entry]) -> Decoded:
        """Decode a batch: no lock, and the store only for data keys not cached yet
        (auditq/pii), so the drain can run it while the previous batch is being written
        (worker/pipeline.py).

        Personal fields are encrypted here too (``_seal_ahead``), a part of the batch at a
        time, right after that part is decoded: its rows are still in the core's cache then,
        where a whole batch of thousands of rows is not by the time its last row is decoded
        (decoding and sealing 5,000 rows by parts of 1,000 costs about 6 % less CPU than the
        whole batch, then all of it: bench/RESULTS.md, Drain with personal fields
        encrypted)."""
        items: list[Item] = []
        sizes: list[int] = []
        dead: list[tuple[Entry, str]] = []
        sealed = True
        for start in range(0, len(entries), SEALED_PART):
            part = entries[start : start + SEALED_PART]
            # Validated as the producers' clients validate (secrets redacted); shard-aware ids.
            decoded = decode_rows(
                [(entry.id, entry.fields) for entry in part],
                self.max_event_bytes, self.redact_keys, self.queue.shard,
            )  # fmt: skip
            rows = []
            for entry, row in zip(part, decoded, strict=True):
                if isinstance(row, Exception):
                    dead.append((entry, reason(row)))
                    log.warning("undecodable entry consumer=%s entry=%s error=%s",
                                self.consumer, entry.id, reason(row))  # fmt: skip
                else:
                    items.append((entry, row))
                    sizes.append(len(entry.fields.get(b"event", b"")))
                    rows.append(row)
            sealed = sealed and self._seal_ahead(rows)
        decoded_batch = Decoded(entries, items, sizes, dead, sealed)
        # Where the batch goes in one insert, that insert is made here too (the store's
        # choice: ``Store.encode_rows``).
        fits = len(items) <= self.sizer.size and sum(sizes) <= self.sizer.max_bytes
        if sealed and items and fits:
            decoded_batch.encoded = self.store.encode_rows([row for _, row in items])
        return decoded_batch

    def _seal_ahead(self, rows: list[Row]) -> bool:
        """Encrypt personal fields on the prefetch thread while the previous batch is
        written (worker/pipeline.py), so it costs the drain little. Best effort: should the
        keys not be readable now, the insert seals the batch itself and retries a key store
        failure as it retries the insert."""
        try:
            self.seal(rows)  # in place: the rows are this worker's own
        except StoreError as error:
            log.warning("sealing ahead failed consumer=%s error=%s", self.consumer, error)
            return False
        return True

    def store_decoded(
        self, decoded: Decoded, backlog: bool, ack_on: Executor | None = None
    ) -> None:
        """Store a decoded batch, then ack and dead-letter. Call with ``self.lock`` held.

        With ``ack_on``, a batch stored whole is acked on that executor (the drain's prefetch
        thread), so the next batch's insert need not wait for the round trip: the ack still
        follows the commit, and ``settle`` waits for it.
        """
        entries, items, sizes = decoded.entries, decoded.items, decoded.sizes
        if not entries:
            return
        started = time.monotonic()
        self.status.busy = "draining"
        outcome = _Outcome(dead=list(decoded.dead))
        seal = as_is if decoded.sealed else self.seal
        complete = False
        try:
            if decoded.encoded is not None:  # one insert, made ahead
                self._store(items, entries, outcome, seal, decoded.encoded)
            else:
                for chunk in chunk_by_bytes(items, sizes, self.sizer.max_bytes):
                    self._store(chunk, entries, outcome, seal)
            complete = True
        except Interrupted:
            log.warning(
                "batch interrupted by shutdown consumer=%s left_pending=%d",
                self.consumer,
                len(entries) - len(outcome.stored) - len(outcome.dead),
            )
        except Exception as error:
            # Not one entry's fault (those are dead-lettered above): the batch stays pending
            # and is redelivered; should it never pass, its dead letters say why.
            done = {entry.id for entry in outcome.stored} | {e.id for e, _ in outcome.dead}
            left = [entry.id for entry in entries if entry.id not in done]
            with contextlib.suppress(redis.RedisError):
                self.queue.remember_failure(left, reason(error))
            raise
        finally:
            # Also on an unexpected error: what was committed is acked, the rest stays pending.
            latency_ms = (time.monotonic() - started) * 1000
            flush = self._finish(outcome, latency_ms if complete else None)
            if complete and ack_on is not None:
                self._acking = ack_on.submit(flush)
            else:
                flush()
            self.status.busy = "idle"
        if complete and not outcome.failures:  # a failure already shrank the size
            self.sizer.succeeded(latency_ms, len(items), sum(sizes), backlog)
        self.status.batch_size = self.sizer.size
        log.debug(
            "batch consumer=%s entries=%d inserted=%d duplicates=%d dead_lettered=%d"
            " failures=%d latency_ms=%.0f next_size=%d",
            self.consumer, len(entries), outcome.new_rows,
            len(outcome.stored) - outcome.new_rows, len(outcome.dead),
            outcome.failures, latency_ms, self.sizer.size,
        )  # fmt: skip

    def _store(
        self,
        chunk: list[Item],
        held: list[Entry],
        outcome: _Outcome,
        seal: Sealer,
        encoded: Encoded | None = None,
    ) -> None:
        """Insert the chunk, bisecting refused parts; retry transient failures in place.

        ``pending`` is a stack of parts still to insert, so the work done survives a retry:
        a part already committed is never sent again, and a failed part is re-split to the
        (now smaller) batch size before the next attempt. ``seal`` encrypts a part's personal
        fields (nothing if they were sealed ahead); ``encoded`` is the whole chunk's insert
        made ahead: used while the chunk goes whole (parts are only ever smaller).
        """
        retry = retrying(
            base=self.retry_base,
            cap=self.retry_max,
            stopping=self.status.stopping,
            before=self._before_attempt,
            after=self._after_failure,
        )
        retry(self._drain_parts, [chunk], outcome, [entry.id for entry in held], seal, encoded)

    # The retry hooks read the batch from the call's arguments, not from a closure: tenacity's
    # Retrying sits in reference cycles until the collector runs, and would hold the batch
    # with it; the arguments are let go of when the call returns.
    # Between attempts the batch's lease is renewed (before the sleep and after it), so the
    # entries look idle to other workers for at most one sleep or one attempt.

    def _before_attempt(self, state: RetryCallState) -> None:
        if state.attempt_number > 1:
            _, _, held_ids, *_ = state.args
            self.status.busy = "draining"
            self.status.retried += 1
            self.count({"retried": 1})
            self._renew(held_ids)

    def _after_failure(self, state: RetryCallState) -> None:
        pending, outcome, held_ids, *_ = state.args
        self._renew(held_ids)
        outcome.failures += 1
        self.status.failed_batches += 1
        self.status.busy = "backoff"
        self.sizer.failed()
        self.status.batch_size = self.sizer.size
        self.count({"failed_batches": 1})
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "store unavailable consumer=%s attempt=%d rows=%d next_size=%d error=%s",
            self.consumer, state.attempt_number, sum(map(len, pending)),
            self.sizer.size, error,
        )  # fmt: skip

    def _drain_parts(
        self,
        pending: list[list[Item]],
        outcome: _Outcome,
        _held_ids: list[str],
        seal: Sealer,
        encoded: Encoded | None,
    ) -> None:
        """Insert the parts left; ``_held_ids`` is there for the retry hooks (above)."""
        while pending:
            part = pending.pop()
            if len(part) > self.sizer.size:
                pending += reversed(split(part, self.sizer.size))
                continue
            try:
                if encoded is not None and len(part) == encoded.count:
                    outcome.new_rows += self.store.insert_encoded(encoded)
                else:
                    outcome.new_rows += self.store.insert_rows(seal([row for _, row in part]))
            except StoreUnavailable:
                pending.append(part)
                raise
            except Exception as error:  # not transient, so the rows' fault
                if len(part) == 1:
                    outcome.dead.append((part[0][0], reason(error)))
                    # Only the error's code: a database message may quote the row's values.
                    log.warning(
                        "row refused by the store consumer=%s entry=%s id=%s error=%s",
                        self.consumer, part[0][0].id, part[0][1][_ID], reason(error).split(":")[0],
                    )  # fmt: skip
                else:
                    half = len(part) // 2
                    pending += [part[half:], part[:half]]
            else:
                outcome.stored += [entry for entry, _ in part]

    def settle(self) -> None:
        """Wait until the acks of the batches stored so far are sent (or failed and logged)."""
        if self._acking is not None:
            self._acking.result()
            self._acking = None

    def _finish(self, outcome: _Outcome, latency_ms: float | None) -> partial[None]:
        """Count the batch in this process, and return the round trip that acks what was
        stored, dead-letters what was refused and adds to the shared counters.

        ``latency_ms`` is None for a batch cut short: it counts its rows, not as a batch.
        """
        self.status.inserted += outcome.new_rows
        self.status.dead_lettered += len(outcome.dead)
        counts = {
            "inserted": outcome.new_rows,
            "duplicates": len(outcome.stored) - outcome.new_rows,
            "dead_lettered": len(outcome.dead),
        }
        if latency_ms is not None:
            self.status.last_latency_ms = latency_ms
            counts |= {
                "batches": 1,
                "batch_latency_ms_sum": round(latency_ms),
                latency_field(latency_ms): 1,
            }
        return partial(self._flush, outcome, counts)

    def _flush(self, outcome: _Outcome, counts: dict[str, int]) -> None:
        pipe = self.queue.redis.pipeline(transaction=True)
        self.dead_letter(outcome.dead, pipe)
        stored = outcome.stored
        redelivered = [entry.id for entry in stored if entry.deliveries > 1]
        self.queue.ack([entry.id for entry in stored], pipe, noted=redelivered)
        self.stats.incr(counts, pipe)
        try:
            pipe.execute()
        except redis.RedisError as error:
            # The rows are committed; unacked entries come back through reclaim and are
            # skipped by id, so this costs a second insert attempt, not data.
            log.warning(
                "ack failed consumer=%s entries=%d error=%s",
                self.consumer, len(outcome.stored) + len(outcome.dead), type(error).__name__,
            )  # fmt: skip

    def count(self, counts: dict[str, int]) -> None:
        """Add to the per-minute counters now; a Redis error is logged, not raised."""
        try:
            self.stats.incr(counts)
        except redis.RedisError as error:
            log.warning("counting failed consumer=%s error=%s", self.consumer, type(error).__name__)

    def _renew(self, ids: list[str]) -> None:
        try:
            self.queue.renew(self.consumer, [*ids, *self.read_ahead])
        except redis.RedisError as error:
            log.warning("lease renewal failed consumer=%s error=%s", self.consumer, error)
