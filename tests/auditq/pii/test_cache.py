"""The writer's cache of data keys: bounded, and the keys used lately stay."""

from __future__ import annotations

import threading

from auditq.pii.cache import KeyCache


def filled(size: int, subjects: range) -> KeyCache[int]:
    cache: KeyCache[int] = KeyCache(size)
    cache.put_many({f"s{i}": i for i in subjects})
    return cache


def test_holds_what_was_put_and_only_that():
    cache = filled(10, range(4))
    assert cache.get_many(["s0", "s3", "s9"]) == {"s0": 0, "s3": 3}
    assert cache.get_many([]) == {}


def test_holds_at_most_its_size():
    for size in (2, 3, 10, 11):
        cache = filled(size, range(5 * size))
        assert len(cache) <= size
        # The latest half of the size are always there.
        latest = [f"s{i}" for i in range(5 * size - size // 2, 5 * size)]
        assert cache.get_many(latest).keys() == set(latest)


def test_a_key_in_use_outlives_keys_added_after_it():
    cache = filled(10, range(10))
    for i in range(10, 100):
        assert cache.get_many(["s0"]) == {"s0": 0}  # looked up as each new key comes
        cache.put_many({f"s{i}": i})
    assert cache.get_many(["s1"]) == {}  # unused since: gone
    assert len(cache) <= 10


def test_a_key_unused_for_a_whole_size_of_additions_is_gone():
    cache = filled(10, range(1))
    cache.put_many({f"s{i}": i for i in range(1, 11)})
    assert cache.get_many(["s0"]) == {}


def test_threads_share_it():
    cache: KeyCache[int] = KeyCache(1000)

    def work(offset: int) -> None:
        for i in range(2000):
            cache.put_many({f"s{offset + i}": offset + i})
            cache.get_many([f"s{offset + i // 2}"])

    threads = [threading.Thread(target=work, args=(n * 10_000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 1000
    held = cache.get_many([f"s{n * 10_000 + i}" for n in range(4) for i in range(2000)])
    assert len(held) >= 500 and all(value == int(subject[1:]) for subject, value in held.items())
