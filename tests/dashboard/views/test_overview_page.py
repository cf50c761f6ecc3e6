"""The overview (dashboard/views/overview.py, dashboard/overview.py, dashboard/charts.py)."""

from __future__ import annotations

import re
import threading

from auditq.client import AuditClient
from auditq.devtools.embedded import free_port
from auditq.stats import Stats
from dashboard.overview import snapshot
from dashboard.resources import Resources
from tests.dashboard.helpers import login
from worker.heartbeat import Heartbeat, WorkerStatus


def tile(html: str, ident: str) -> str:
    match = re.search(rf'id="{ident}"[^>]*data-value="([^"]*)"', html)
    assert match, ident
    return match.group(1)


def test_the_page_shows_the_queue_dead_letters_and_workers(
    admin, make_settings, redis_client, keys
):
    producer = AuditClient(make_settings(), redis_client=redis_client)
    producer.log_many([{"action": "user.login"} for _ in range(3)])
    redis_client.xadd(keys.dead, {"event": "{}", "reason": "bad"})
    Heartbeat(
        redis_client, keys, WorkerStatus(stopping=threading.Event(), batch_size=100), ttl=30
    ).beat()

    html = admin.get("/").get_data(as_text=True)
    assert tile(html, "queue-length") == "3"
    assert tile(html, "dead-letters") == "1"
    assert tile(html, "workers-alive") == "1"
    assert float(tile(html, "queue-lag")) >= 0
    # Per minute over the last 60 s (the minute may have turned since the events went in).
    rate = float(re.search(r'id="rate-enqueued">([\d.]+)<', html).group(1))
    assert 0 < rate <= 3
    # throughput, drops and failures (events), failed batches, latency
    assert html.count('<figure class="chart">') == 4
    assert "no batches stored in this range" in html


def test_the_page_polls_itself_and_htmx_gets_only_the_fragment(admin):
    page = admin.get("/").get_data(as_text=True)
    assert 'hx-get="/?range=1h"' in page
    assert 'hx-trigger="every 500ms, visibilitychange from:document"' in page
    fragment = admin.get("/?range=1h", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert 'id="queue-length"' in text
    assert "<html" not in text and "<nav" not in text
    assert "HX-Request" in fragment.headers["Vary"]


def test_drops_by_reason_and_failures_are_shown(admin, redis_client, keys):
    Stats(redis_client, keys).incr(
        {"dropped_queue_full": 7, "dropped_redis_unavailable": 2, "failed_batches": 3}
    )
    html = admin.get("/").get_data(as_text=True)
    assert re.search(r'id="dropped">9<', html)
    assert re.search(r"queue full</span> <b>7</b>", html)
    assert re.search(r"redis unavailable</span> <b>2</b>", html)
    assert re.search(r'id="failures">3<', html)


def test_the_24_hour_range_renders_15_minute_bars(admin, redis_client, keys):
    Stats(redis_client, keys).incr({"dropped_queue_full": 1})
    html = admin.get("/?range=24h").get_data(as_text=True)
    assert "per 15 min" in html
    assert 'aria-current="true">24h<' in html
    assert admin.get("/?range=bogus").status_code == 200


def test_the_alerts_summary_has_its_place_in_the_fragment(admin, app):
    source = app.jinja_loader.get_source(app.jinja_env, "partials/overview_live.html")[0]
    assert '{% include "partials/alerts_summary.html" %}' in source


def test_with_redis_down_the_page_still_renders_and_says_so(make_app):
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    c = app.test_client()
    # Redis is down, so the login rate limit counts in memory: logging in still works.
    assert login(c).status_code == 303
    response = c.get("/")
    assert response.status_code == 200
    assert "Redis unreachable" in response.get_data(as_text=True)


def test_per_minute_cards_show_whole_numbers(make_settings, redis_client, keys):
    # Issue 10: the cards read "10,038.5 per minute" (a weighted previous minute).
    now = 1_800_000_030.0  # 30 s into a minute: the previous minute weighs 0.5
    minute = int(now // 60)
    redis_client.hset(keys.minute(minute - 1), mapping={"enqueued": 3, "inserted": 1})
    redis_client.hset(keys.minute(minute), mapping={"enqueued": 10_037, "inserted": 4})
    res = Resources(make_settings())
    try:
        rates = snapshot(res, now=now)["rates"]
    finally:
        res.close()
    assert rates == {
        "enqueued_per_minute": 10_038,  # 10,037 + 3 * 0.5 = 10,038.5, shown whole
        "inserted_per_minute": 4,  # 4 + 0.5
        "dropped_per_minute": 0,
    }
    assert all(isinstance(v, int) for v in rates.values())


def test_the_cards_name_failures_with_their_units(admin, redis_client, keys):
    Stats(redis_client, keys).incr({"failed_batches": 2, "dead_lettered": 5, "direct_failed": 1})
    html = admin.get("/").get_data(as_text=True)
    assert re.search(r'id="failures">2<', html)  # batches, not batches + events
    assert re.search(r"failed batches</span> <b>2</b>", html)
    assert re.search(r"dead-lettered \(events\)</span> <b>5</b>", html)
    assert re.search(r"direct writes failed \(events\)</span> <b>1</b>", html)
    # The chart's legend uses the same names.
    assert '<span class="key s-dead">dead-lettered</span>' in html
    assert '<span class="key s-batch">failed batches</span>' in html
    assert ">failed<" not in html
