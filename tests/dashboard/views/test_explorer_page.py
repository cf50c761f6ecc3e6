"""The explorer (dashboard/views/explorer.py, dashboard/explorer.py) and the stores' read
path it uses (``query_events`` in auditq/stores/), against both stores: postgres (psycopg)
and supabase (supabase-py through real PostgREST)."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from auditq.events import build_event
from auditq.stores import EventFilters
from auditq.stores.postgres import PostgresStore
from dashboard import explorer as ex
from tests.dashboard.helpers import login

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)

# Values that would change a query's shape if they were ever spliced into SQL or into a
# PostgREST filter: separators, grouping, operators, quotes, wildcards, comments.
HOSTILE = [
    "a,b",
    "x)",
    "(y",
    "a.b.c",
    'q"uote',
    "it's",
    "eq.x",
    "not.eq.y",
    "in.(1,2)",
    "*",
    "%",
    "_",
    "null",
    "a,b)or(id.gt.0",
    "' or '1'='1",
    "x'; drop table audit_logs; --",
    "back\\slash",
    "{}",
    "a&b=c",
    "#frag",
    "sp ace",
    "ünïcødé ✓",
]


@pytest.fixture(params=["postgres", "supabase"])
def store_app(request, make_app, postgrest):
    if request.param == "postgres":
        return make_app()
    return make_app(
        store="supabase",
        supabase_url=postgrest.url,
        supabase_service_role_key=postgrest.service_key,
        database_url=None,
    )


@pytest.fixture
def store(store_app):
    return store_app.extensions["auditq"].store


@pytest.fixture
def insert(clean_db):
    writer = PostgresStore(clean_db, timeout=5)

    def insert(*dicts) -> list:
        events = [build_event(d) for d in dicts]
        writer.insert_events(events)
        return events

    yield insert
    writer.close()


@pytest.fixture
def admin_of(store_app):
    c = store_app.test_client()
    login(c)
    return c


def ids(rows) -> list[str]:
    return [r["id"] for r in rows]


def test_each_filter_selects_exactly_its_rows(store, insert):
    events = insert(
        {"action": "user.login", "actor_id": "u1", "occurred_at": T0, "outcome": "success"},
        {"action": "user.login", "actor_id": "u2", "occurred_at": T0 + timedelta(minutes=1)},
        {
            "action": "user.ban",
            "actor_type": "admin",
            "actor_id": "u1",
            "target_type": "user",
            "target_id": "u9",
            "tenant_id": "t1",
            "category": "critical",
            "outcome": "denied",
            "occurred_at": T0 + timedelta(minutes=2),
        },
    )
    e0, e1, e2 = (str(e.id) for e in events)
    cases = {
        EventFilters(): [e2, e1, e0],
        EventFilters(action="user.login"): [e1, e0],
        EventFilters(actor_id="u1"): [e2, e0],
        EventFilters(actor_type="admin"): [e2],
        EventFilters(target_type="user", target_id="u9"): [e2],
        EventFilters(tenant_id="t1"): [e2],
        EventFilters(category="critical"): [e2],
        EventFilters(outcome="success"): [e0],
        EventFilters(since=T0 + timedelta(minutes=1)): [e2, e1],
        EventFilters(until=T0 + timedelta(minutes=1)): [e0],
        EventFilters(since=T0, until=T0 + timedelta(minutes=2), actor_id="u2"): [e1],
        EventFilters(action="user.login", actor_id="u9"): [],
    }
    for filters, expected in cases.items():
        assert ids(store.query_events(filters)) == expected, filters


def test_rows_come_back_with_the_same_types_from_either_store(store, insert):
    (event,) = insert(
        {
            "action": "a",
            "ip": "192.0.2.1",
            "metadata": {"n": [1, {"x": None}]},
            "occurred_at": T0,
            "user_agent": "curl/8",
        }
    )
    (row,) = store.query_events(EventFilters())
    assert row["id"] == str(event.id)
    assert row["occurred_at"] == T0 and row["occurred_at"].tzinfo is not None
    assert isinstance(row["received_at"], datetime)
    assert row["ip"] == "192.0.2.1"
    assert row["metadata"] == {"n": [1, {"x": None}]}
    assert row["ingest_path"] == "queue" and row["outcome"] is None


def test_hostile_filter_values_match_only_themselves(store, insert):
    for value in HOSTILE:
        insert({"action": value, "actor_id": value, "target_id": value, "occurred_at": T0})
    insert({"action": "decoy", "actor_id": "decoy", "target_id": "decoy", "occurred_at": T0})
    for value in HOSTILE:
        for column in ("action", "actor_id", "target_id"):
            rows = store.query_events(EventFilters(**{column: value}))
            assert [r[column] for r in rows] == [value], (column, value)


def test_hostile_values_through_the_page_and_the_export(admin_of, insert):
    for value in HOSTILE:
        insert({"action": value, "occurred_at": T0})
    for value in HOSTILE:
        page = admin_of.get("/explorer/", query_string={"action": value})
        assert page.status_code == 200
        assert page.text.count("<tr data-id=") == 1, value
        export = admin_of.get("/explorer/export.ndjson", query_string={"action": value})
        assert [json.loads(line)["action"] for line in export.text.splitlines()] == [value]


def test_keyset_pages_walk_every_row_once_in_order_with_ties(store, insert):
    same_time = [{"action": "tie", "occurred_at": T0} for _ in range(7)]
    others = [{"action": "spread", "occurred_at": T0 + timedelta(seconds=i)} for i in range(6)]
    events = insert(*same_time, *others)
    expected = [
        str(e.id) for e in sorted(events, key=lambda e: (e.occurred_at, e.id), reverse=True)
    ]
    seen, before = [], None
    while True:
        rows = store.query_events(EventFilters(), before=before, limit=3)
        seen += ids(rows)
        if len(rows) < 3:
            break
        before = (rows[-1]["occurred_at"], uuid.UUID(rows[-1]["id"]))
    assert seen == expected


def test_the_page_walks_older_pages_by_cursor(admin_of, insert):
    events = insert(
        *[
            {"action": "many", "occurred_at": T0 + timedelta(milliseconds=i // 3)}
            for i in range(ex.PAGE_SIZE * 2 + 5)
        ]
    )
    insert({"action": "other", "occurred_at": T0})
    url, seen, pages = "/explorer/?action=many", [], 0
    while url:
        html = admin_of.get(url).get_data(as_text=True)
        seen += re.findall(r'<tr data-id="([^"]+)"', html)
        pages += 1
        match = re.search(r'href="([^"]+)" rel="next"', html)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert pages == 3
    assert len(seen) == len(set(seen)) == len(events)


def test_filters_that_do_not_parse_are_shown_not_run(admin_of):
    response = admin_of.get(
        "/explorer/", query_string={"since": "yesterday", "outcome": "maybe", "action": "x" * 300}
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "must be a date and time" in html and "must be one of" in html
    assert "at most 256 characters" in html
    bad_cursor = admin_of.get("/explorer/", query_string={"before": "garbage"})
    assert "That page link is not valid" in bad_cursor.text


def test_audit_data_is_rendered_as_text(admin_of, insert):
    insert(
        {
            "action": "<script>window.__pwned=1</script>",
            "actor_id": '"><img src=x onerror=alert(1)>',
            "metadata": {"note": "<img src=x onerror=window.__pwned=2>"},
            "occurred_at": T0,
        }
    )
    html = admin_of.get("/explorer/").get_data(as_text=True)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=window.__pwned=2&gt;" in html
    assert "<img" not in html and "<script>window" not in html


def test_exports_stream_every_filtered_row_in_keyset_pages(admin_of, insert, monkeypatch):
    monkeypatch.setattr(ex, "EXPORT_PAGE", 7)  # several pages from a few rows
    wanted = insert(
        *[
            {"action": "export.me", "actor_id": f"u{i}", "metadata": {"i": i}, "occurred_at": T0}
            for i in range(23)
        ]
    )
    insert({"action": "not.me", "occurred_at": T0})

    ndjson = admin_of.get("/explorer/export.ndjson?action=export.me")
    assert ndjson.status_code == 200
    assert ndjson.mimetype == "application/x-ndjson"
    assert "attachment" in ndjson.headers["Content-Disposition"]
    lines = [json.loads(line) for line in ndjson.get_data(as_text=True).splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(str(e.id) for e in wanted)
    assert {r["metadata"]["i"] for r in lines} == set(range(23))

    response = admin_of.get("/explorer/export.csv?action=export.me")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 23 and len({r["id"] for r in rows}) == 23
    assert json.loads(rows[0]["metadata"])["i"] in range(23)


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(admin_of, insert):
    insert({"action": '=HYPERLINK("http://x")', "actor_id": "@SUM(1)", "occurred_at": T0})
    text = admin_of.get("/explorer/export.csv?actor_id=@SUM(1)").get_data(as_text=True)
    row = list(csv.DictReader(io.StringIO(text)))[0]
    assert row["action"] == '\'=HYPERLINK("http://x")' and row["actor_id"] == "'@SUM(1)"
    # NDJSON is for programs: values there are exact.
    line = admin_of.get("/explorer/export.ndjson?actor_id=@SUM(1)").get_data(as_text=True)
    assert json.loads(line)["action"] == '=HYPERLINK("http://x")'


def test_an_export_is_itself_audit_logged(admin, clean_db):
    import psycopg

    admin.get("/explorer/export.csv?action=user.login").get_data()
    with psycopg.connect(clean_db) as conn:
        (metadata,) = conn.execute(
            "select metadata from public.audit_logs where action = 'auditq.explorer.export'"
        ).fetchone()
    assert metadata == {"format": "csv", "filters": {"action": "user.login"}}


def test_an_unknown_export_format_is_404(admin):
    assert admin.get("/explorer/export.xlsx").status_code == 404


# --- extreme input (issue 10, item 7) -----------------------------------------------------

EXTREME_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("when", EXTREME_TIMES)
def test_times_out_of_range_in_utc_are_400_on_the_page_and_both_exports(admin_of, when):
    for name in ("since", "until"):
        page = admin_of.get("/explorer/", query_string={name: when})
        assert page.status_code == 400
        assert "must be a date and time in years 1 to 9999" in page.text
        for fmt in ("csv", "ndjson"):
            export = admin_of.get(f"/explorer/export.{fmt}", query_string={name: when})
            assert export.status_code == 400, (name, fmt)
    cursor = admin_of.get("/explorer/", query_string={"before": f"{when}_{uuid.uuid4()}"})
    assert cursor.status_code == 400 and "That page link is not valid" in cursor.text


def test_a_nul_in_a_filter_is_a_bad_filter_value_not_a_store_failure(admin_of):
    page = admin_of.get("/explorer/?action=%00")
    assert page.status_code == 400
    assert "must not contain NUL characters" in page.text
    assert "did not answer" not in page.text
    assert admin_of.get("/explorer/export.csv?actor_id=a%00b").status_code == 400


def test_rows_at_both_ends_of_the_time_range_are_shown_and_paged(admin_of, insert):
    events = insert(
        {"action": "edge", "occurred_at": "0001-01-01T00:00:00Z"},
        {"action": "edge", "occurred_at": "9999-12-31T23:59:59.999999Z"},
    )
    seen, url = [], "/explorer/?action=edge&since=0001-01-01T00:00Z"
    page = admin_of.get(url)
    assert page.status_code == 200
    seen += re.findall(r'<tr data-id="([^"]+)"', page.text)
    assert seen == [str(events[1].id), str(events[0].id)]
    export = admin_of.get("/explorer/export.ndjson?action=edge")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [line["occurred_at"][:4] for line in lines] == ["9999", "0001"]
