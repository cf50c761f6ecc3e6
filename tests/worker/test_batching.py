"""The AIMD batch-size controller and the byte-bounded chunking (pure, no servers)."""

import pytest

from auditq.config import load_settings
from worker.batching import GENERIC, PROFILES, AdaptiveBatch, chunk_by_bytes, split


def sizer(**overrides) -> AdaptiveBatch:
    options = {
        "start": 100, "minimum": 10, "maximum": 200, "max_bytes": 1_000_000, "target_ms": 500,
    } | overrides  # fmt: skip
    return AdaptiveBatch(**options)


def test_grows_by_one_step_per_fast_full_batch_up_to_the_maximum():
    batch = sizer()
    batch.succeeded(latency_ms=50, entries=100, nbytes=10_000, backlog=True)
    assert batch.size == 110
    for _ in range(50):
        batch.succeeded(latency_ms=50, entries=100, nbytes=10_000, backlog=True)
    assert batch.size == 200


def test_does_not_grow_without_a_backlog():
    batch = sizer()
    batch.succeeded(latency_ms=5, entries=30, nbytes=3_000, backlog=False)
    assert batch.size == 100


def test_halves_on_a_slow_batch_and_on_a_failure_down_to_the_minimum():
    batch = sizer()
    batch.succeeded(latency_ms=900, entries=100, nbytes=10_000, backlog=True)
    assert batch.size == 50
    batch.failed()
    assert batch.size == 25
    for _ in range(10):
        batch.failed()
    assert batch.size == 10


def test_reads_fewer_entries_when_events_are_large():
    batch = sizer(max_bytes=100_000)
    assert batch.read_count() == 100  # nothing known about event sizes yet
    batch.succeeded(latency_ms=50, entries=100, nbytes=100 * 5_000, backlog=False)
    assert batch.read_count() == 20  # 100 KB / 5 KB
    batch.succeeded(latency_ms=50, entries=1, nbytes=10_000_000, backlog=False)
    assert batch.read_count() >= 1


def test_rejects_inconsistent_bounds():
    with pytest.raises(ValueError):
        sizer(start=5)
    with pytest.raises(ValueError):
        sizer(decrease=1.0)


def test_chunks_by_bytes_keep_order_and_let_a_huge_item_go_alone():
    items = ["a", "b", "c", "d", "e"]
    sizes = [40, 40, 40, 500, 10]
    assert list(chunk_by_bytes(items, sizes, 100)) == [["a", "b"], ["c"], ["d"], ["e"]]
    assert list(chunk_by_bytes([], [], 100)) == []


def test_split_makes_consecutive_pieces():
    assert split([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


# --- per store ---------------------------------------------------------------------------


def store_settings(monkeypatch, **overrides):
    for name in ("AUDITQ_BATCH_START", "AUDITQ_BATCH_MIN", "AUDITQ_BATCH_MAX"):
        monkeypatch.delenv(name, raising=False)
    return load_settings(redis_url="redis://127.0.0.1:1/0", **overrides)


def test_each_store_starts_and_grows_at_its_own_pace(monkeypatch):
    settings = store_settings(monkeypatch)
    copy = AdaptiveBatch.for_store("postgres", settings)
    post = AdaptiveBatch.for_store("supabase", settings)
    assert copy.size == PROFILES["postgres"].start > post.size == PROFILES["supabase"].start
    for batch in (copy, post):
        before = batch.size
        batch.succeeded(latency_ms=50, entries=before, nbytes=before * 300, backlog=True)
        assert batch.size > before + settings.batch_min  # a store's step, not the minimum's
        for _ in range(100):
            batch.succeeded(latency_ms=50, entries=batch.size, nbytes=300, backlog=True)
        assert batch.size == settings.batch_max  # still bounded by the settings
        batch.succeeded(latency_ms=900, entries=batch.size, nbytes=300, backlog=True)
        assert batch.size == settings.batch_max // 2  # and by the latency target


def test_an_explicit_start_and_bounds_win_over_the_store_profile(monkeypatch):
    explicit = AdaptiveBatch.for_store("postgres", store_settings(monkeypatch, batch_start=700))
    assert explicit.size == 700
    capped = AdaptiveBatch.for_store("postgres", store_settings(monkeypatch, batch_max=1200))
    assert capped.size == 1200
    settings = store_settings(monkeypatch)
    other = AdaptiveBatch.for_store("another", settings)
    assert other.size == GENERIC.start and other.step == other.minimum  # generic
