"""The Retention page: partitions with rows and sizes, what the next pass archives, the last
pass's result; behind the login like every page."""

from __future__ import annotations

import time

import psycopg
import pytest

from auditq.events import build_event
from auditq.retention import status
from auditq.stores.postgres import PostgresStore


@pytest.fixture
def app(make_app, tmp_path):
    return make_app(retention_days=30, archive_url=f"file://{tmp_path}/arch")


@pytest.fixture
def old_month(clean_db):
    with psycopg.connect(clean_db) as conn:
        conn.execute("select public.audit_logs_month_partition('2016-03-10')")
    store = PostgresStore(clean_db)
    store.insert_events(
        [build_event({"action": "old", "occurred_at": "2016-03-10T00:00:00Z"}) for _ in range(3)]
    )
    store.close()
    yield
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("drop table if exists public.audit_logs_y2016m03")


def test_the_page_needs_a_login(client):
    assert client.get("/retention/").status_code in (302, 303, 401)


def test_partitions_rows_and_what_the_next_pass_archives(viewer, old_month):
    page = viewer.get("/retention/").get_data(as_text=True)
    assert "30 days" in page
    row = page[page.index("audit_logs_y2016m03") :].split("</tr>", 1)[0]
    assert ">3<" in row and "KiB" in row and "archive and drop" in row
    assert "audit_logs_default" in page
    assert "archives 1 month(s)" in page
    assert "Last pass" in page and "never" in page


def test_the_last_pass_and_a_failure_show(viewer, redis_client, keys, old_month):
    status.record(
        redis_client,
        keys.prefix,
        {
            "error": None,
            "months": [
                {
                    "month": "2016-02",
                    "rows": 7,
                    "action": "dropped",
                    "part": 1,
                    "manifest_sha256": "ab" * 32,
                }
            ],
        },
    )
    page = viewer.get("/retention/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "2016-02" in page and "ab" * 32 in page and "<html" not in page
    assert time.strftime("%Y") in page  # the next pass: a day after this one
    status.record(redis_client, keys.prefix, {"error": "cannot write <s3://x>", "months": []})
    page = viewer.get("/retention/").get_data(as_text=True)
    assert "Last pass failed, nothing dropped: cannot write &lt;s3://x&gt;" in page
    assert status.retention_failing(redis_client, keys.prefix) == 1


def test_the_nav_links_the_page(viewer):
    assert 'href="/retention/"' in viewer.get("/").get_data(as_text=True)
