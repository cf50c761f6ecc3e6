"""The AIMD batch-size controller and the byte-bounded chunking (pure, no servers)."""

import pytest

from worker.batching import AdaptiveBatch, chunk_by_bytes, split


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
