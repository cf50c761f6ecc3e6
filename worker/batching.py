"""How many entries a worker reads at once: an AIMD controller, bounded by count and bytes.

In the spirit of Vector's adaptive request concurrency: the size grows by a fixed step
while there is a backlog and batches finish under the latency target, and halves when a
batch is slow or fails. Additive increase probes for spare capacity gently; multiplicative
decrease backs off fast when the store struggles, so a slow or recovering database gets
smaller requests at once. Pure: no I/O, no clock; the caller measures and reports.

Each store starts and grows at its own pace (``AdaptiveBatch.for_store``): a COPY keeps
gaining up to 5,000 rows a batch (bench/RESULTS.md, the fixed-size sweep), so there is no
point spending a backlog's first hundred batches climbing from 500 in steps of 50.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from auditq.config import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class StoreProfile:
    start: int  # first read, unless AUDITQ_BATCH_START is set
    step: int | None  # growth per fast, full batch (None: AUDITQ_BATCH_MIN)


# COPY: one statement and commit per batch, cheapest per row at the largest batches.
# PostgREST parses each body as one JSON document before inserting it: a lower start keeps
# the first requests' latency (and a failed one's retry) small while the sizer climbs.
# A store without a profile of its own: the minimum's step (see __init__).
GENERIC = StoreProfile(start=500, step=None)
PROFILES = {
    "postgres": StoreProfile(start=2_000, step=500),
    "supabase": StoreProfile(start=1_000, step=250),
}


class AdaptiveBatch:
    def __init__(
        self,
        *,
        start: int,
        minimum: int,
        maximum: int,
        max_bytes: int,
        target_ms: float,
        step: int | None = None,
        decrease: float = 0.5,
    ) -> None:
        if not 0 < minimum <= start <= maximum:
            raise ValueError("0 < minimum <= start <= maximum must hold")
        if not 0 < decrease < 1:
            raise ValueError("decrease must be between 0 and 1")
        self.minimum = minimum
        self.maximum = maximum
        self.max_bytes = max_bytes
        self.target_ms = target_ms
        # One minimum-sized batch per good batch: from the default 500 to 5,000 in 90 batches.
        self.step = step if step is not None else minimum
        self.decrease = decrease
        self.size = start
        self._entry_bytes: float | None = None

    @classmethod
    def for_store(cls, store: str, settings: Settings) -> AdaptiveBatch:
        """The sizer for this store: its profile, within the settings' bounds; a start set
        explicitly (AUDITQ_BATCH_START) wins over the profile's."""
        profile = PROFILES.get(store, GENERIC)
        start = settings.batch_start
        if start is None:
            start = min(max(profile.start, settings.batch_min), settings.batch_max)
        return cls(
            start=start,
            minimum=settings.batch_min,
            maximum=settings.batch_max,
            max_bytes=settings.batch_max_bytes,
            target_ms=settings.batch_target_ms,
            step=profile.step,
        )

    def read_count(self) -> int:
        """How many entries to read next: the adaptive size, lowered so the bytes fit."""
        if not self._entry_bytes:
            return self.size
        return max(1, min(self.size, int(self.max_bytes // self._entry_bytes)))

    def succeeded(self, latency_ms: float, entries: int, nbytes: int, backlog: bool) -> None:
        """A batch was stored. Grow only when more was waiting and it came back in time."""
        if entries:
            mean = nbytes / entries
            # A moving average: one batch of unusually large events should not halve the
            # next read, a lasting change should show within a few batches.
            self._entry_bytes = mean if self._entry_bytes is None else (
                0.7 * self._entry_bytes + 0.3 * mean
            )  # fmt: skip
        if latency_ms > self.target_ms:
            self._shrink()
        elif backlog:
            self.size = min(self.maximum, self.size + self.step)

    def failed(self) -> None:
        """An attempt failed for a reason that may be load (timeout, 5xx, connection loss)."""
        self._shrink()

    def _shrink(self) -> None:
        self.size = max(self.minimum, int(self.size * self.decrease))


def chunk_by_bytes(items: Sequence[T], sizes: Sequence[int], max_bytes: int) -> Iterator[list[T]]:
    """Consecutive chunks of at most max_bytes (an item larger than that goes alone)."""
    chunk: list[T] = []
    total = 0
    for item, size in zip(items, sizes, strict=True):
        if chunk and total + size > max_bytes:
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += size
    if chunk:
        yield chunk


def split(items: Sequence[T], size: int) -> list[list[T]]:
    """items in consecutive pieces of at most size."""
    return [list(items[i : i + size]) for i in range(0, len(items), max(1, size))]
