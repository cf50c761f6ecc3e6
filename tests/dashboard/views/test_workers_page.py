"""Workers page (dashboard/views/workers.py): live and stale workers, both listed."""

from __future__ import annotations

import re
import threading
import time

from tests.dashboard.helpers import login
from worker.heartbeat import Heartbeat, WorkerStatus


def test_live_and_stale_workers_are_listed_and_marked(admin, redis_client, keys):
    status = WorkerStatus(stopping=threading.Event(), batch_size=750, host="web-1", pid=4)
    status.inserted, status.failed_batches, status.last_latency_ms = 1234, 2, 87.5
    Heartbeat(redis_client, keys, status, ttl=30).beat()
    # A worker killed a while ago: its hash expired, its member and last beat remain.
    redis_client.zadd(keys.workers, {"web-2:9": time.time() - 120})

    html = admin.get("/workers").get_data(as_text=True)
    live = html.index("web-1:4")
    stale = html.index("web-2:9")
    assert live < stale  # alive first
    assert 'class="worker-alive"' in html and 'class="worker-stale"' in html
    assert "750" in html and "1,234" in html and "87.5 ms" in html
    assert re.search(r"2 min \d+ s ago", html)


def test_no_workers_is_said_plainly(admin):
    assert "No worker has sent a heartbeat" in admin.get("/workers").get_data(as_text=True)


def test_the_table_is_polled(admin):
    page = admin.get("/workers").get_data(as_text=True)
    assert 'hx-get="/workers"' in page
    fragment = admin.get("/workers", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in fragment


def test_the_page_says_when_stale_workers_are_pruned(make_app):
    # Issue 10: it said "a day later" while the default is an hour.
    for forget_after, shown in ((3600.0, "1 h 0 min"), (600.0, "10 min 0 s")):
        client = make_app(worker_forget_after=forget_after).test_client()
        login(client)
        page = client.get("/workers").get_data(as_text=True)
        assert f"AUDITQ_WORKER_FORGET_AFTER ({shown})" in page
        assert "a day later" not in page
