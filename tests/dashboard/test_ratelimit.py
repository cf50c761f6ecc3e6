"""The login limiter (dashboard/ratelimit.py): a fixed window in Redis, memory as fallback."""

from __future__ import annotations

from auditq.devtools.embedded import free_port
from auditq.keys import Keys
from auditq.queue import connect
from dashboard.ratelimit import FixedWindow


def test_the_window_counts_per_client_and_resets_with_the_next_window(redis_client):
    limiter = FixedWindow(redis_client, Keys("audit"), limit=3, window=300)
    assert [limiter.hit("a", now=1000) for _ in range(4)] == [True, True, True, False]
    assert limiter.hit("b", now=1000)
    assert limiter.hit("a", now=1200)  # 1200 // 300 is the next window
    (key,) = [k for k in redis_client.keys("audit:ratelimit:login:*") if k.endswith(b":b")]
    assert 0 < redis_client.ttl(key) <= 305  # counters expire by themselves


def test_with_redis_down_the_limit_holds_in_memory():
    down = connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)  # as the app connects
    limiter = FixedWindow(down, Keys("audit"), limit=2, window=300)
    assert [limiter.hit("2001:db8::1", now=10) for _ in range(3)] == [True, True, False]
    assert limiter.hit("2001:db8::1", now=400)


def test_exhausted_reads_the_count_without_adding_to_it(redis_client):
    limiter = FixedWindow(redis_client, Keys("audit"), limit=2, window=300)
    assert not limiter.exhausted("login:admin", now=1000)
    limiter.hit("login:admin", now=1000)
    assert not limiter.exhausted("login:admin", now=1000)
    limiter.hit("login:admin", now=1000)
    assert limiter.exhausted("login:admin", now=1000)
    assert limiter.exhausted("login:admin", now=1000)  # reading twice counts nothing
    assert not limiter.exhausted("login:admin", now=1300)  # the next window
