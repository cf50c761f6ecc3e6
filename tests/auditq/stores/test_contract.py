"""One contract, both stores: the same tests run against postgres (psycopg) and supabase
(supabase-py through real PostgREST), and the rows' tests both ways a batch is inserted."""

import psycopg
import pytest

from auditq.events import MAX_METADATA_DEPTH, build_event, event_row
from auditq.stores import DataRejected, StoreUnavailable
from auditq.stores.postgres import PostgresStore
from auditq.stores.supabase import SupabaseStore


def count_rows(pg_dsn, events):
    with psycopg.connect(pg_dsn) as conn:
        return conn.execute(
            "select count(*), count(distinct id) from public.audit_logs where id = any(%s)",
            ([e.id for e in events],),
        ).fetchone()


def sample(n, **extra):
    return [
        build_event(
            {
                "action": "user.role_change",
                "actor_id": f"u_{i}",
                "ip": "192.0.2.7",
                "metadata": {"i": i, "nested": {"a": [1, 2]}},
                **extra,
            }
        )
        for i in range(n)
    ]


@pytest.fixture(params=["rows", "made ahead"])
def insert(request, store):
    """Inserts events as the clients' direct writes do (``insert_events``), or as the
    worker's drain does (``encode_rows`` on its prefetch thread, then ``insert_encoded``)."""
    if request.param == "rows":
        return store.insert_events

    def made_ahead(events, ingest_path="queue"):
        encoded = store.encode_rows([event_row(event, ingest_path) for event in events])
        assert encoded is not None and encoded.count == len(events)
        return store.insert_encoded(encoded)

    return made_ahead


def test_the_same_batch_twice_gives_each_row_once(insert, pg_dsn):
    batch = sample(250)
    assert insert(batch) == 250
    assert insert(batch) == 0
    assert count_rows(pg_dsn, batch) == (250, 250)


def test_a_partly_new_batch_counts_only_the_new_rows(insert, pg_dsn):
    batch = sample(10)
    insert(batch[:4])
    assert insert(batch) == 6


def test_rows_keep_every_field_and_take_received_at_from_the_database(insert, pg_dsn):
    (event,) = sample(1, tenant_id="t1", outcome="denied", category="critical")
    insert([event], ingest_path="direct")
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "select action, actor_id, host(ip), metadata, tenant_id, outcome, category,"
            " ingest_path, received_at is not null, occurred_at from public.audit_logs"
            " where id = %s",
            (event.id,),
        ).fetchone()
    assert row == (
        "user.role_change",
        "u_0",
        "192.0.2.7",
        {"i": 0, "nested": {"a": [1, 2]}},
        "t1",
        "denied",
        "critical",
        "direct",
        True,
        event.occurred_at,
    )


def test_a_batch_with_one_invalid_row_raises_a_data_error(store, pg_dsn):
    batch = sample(5)
    # Refused by the database (text cannot hold NUL); the model refuses it too, so the row
    # is made past it, as a caller that skipped validation would.
    batch[2] = build_event({"action": "x"}).model_copy(update={"action": "bad\u0000row"})
    with pytest.raises(DataRejected):
        store.insert_events(batch)
    assert count_rows(pg_dsn, batch)[0] == 0


def test_a_batch_made_ahead_is_refused_as_its_rows_would_be(pg_dsn, clean_db):
    # Rows made past the model, as a caller that skipped it would. An address inet cannot
    # take fails in our dumper, so no stream is made (the worker sends the rows instead,
    # and bisects them); a NUL fails in the database, which refuses the whole stream.
    store = PostgresStore(pg_dsn, timeout=5)
    bad_ip = build_event({"action": "x"}).model_copy(update={"ip": "host.example"})
    bad_text = build_event({"action": "x"}).model_copy(update={"action": "bad\u0000row"})
    try:
        for bad in (bad_ip, bad_text):
            batch = [*sample(2), bad]
            rows = [event_row(event, "queue") for event in batch]
            with pytest.raises(DataRejected):
                store.insert_rows(rows)
            encoded = store.encode_rows(rows)
            if bad is bad_ip:
                assert encoded is None
            else:
                with pytest.raises(DataRejected):
                    store.insert_encoded(encoded)
            assert count_rows(pg_dsn, batch)[0] == 0
        assert store.insert_events(sample(1)) == 1  # the connection is still good
    finally:
        store.close()


def test_unreachable_store_raises_a_transient_error(pg_dsn):
    dead = "postgresql://postgres@127.0.0.1:1/postgres"
    with pytest.raises(StoreUnavailable):
        PostgresStore(dead, timeout=1).insert_events(sample(1))
    with pytest.raises(StoreUnavailable):
        SupabaseStore("http://127.0.0.1:1", "key", timeout=1).insert_events(sample(1))


def test_a_closed_connection_raises_a_transient_error_then_recovers(pg_dsn, clean_db):
    store = PostgresStore(pg_dsn, timeout=5)
    store.insert_events(sample(1))
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where application_name = 'auditq' and pid <> pg_backend_pid()"
        )
    with pytest.raises(StoreUnavailable):
        store.insert_events(sample(1))
    assert store.insert_events(sample(3)) == 3


def test_postgrest_down_raises_a_transient_error(postgrest, clean_db):
    store = SupabaseStore(postgrest.url, postgrest.service_key, timeout=2)
    postgrest.server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            store.insert_events(sample(1))
    finally:
        postgrest.server.start()
    assert store.insert_events(sample(1)) == 1


def test_ping(store):
    store.ping()


def test_events_at_the_edge_of_what_validation_accepts_are_stored(insert, pg_dsn):
    # "queued" means "will be stored": the limits in auditq/events.py sit inside what
    # Postgres takes (NUL refused, inet without zone ids, UTC range, jsonb numbers).
    deepest: dict = {"a": 1}
    for _ in range(MAX_METADATA_DEPTH - 2):  # metadata itself is the first level
        deepest = {"a": deepest}
    edges = [
        build_event({"action": "a", "occurred_at": "0001-01-01T00:00:00Z"}),
        build_event({"action": "a", "occurred_at": "9999-12-31T23:59:59.999999Z"}),
        build_event({"action": "a", "ip": "::ffff:192.0.2.1", "actor_id": "\\u0000 as text"}),
        build_event({"action": "a", "metadata": {"deep": deepest, "big": 10**4300 - 1}}),
    ]
    assert insert(edges) == len(edges)
    assert count_rows(pg_dsn, edges) == (len(edges), len(edges))


def test_text_with_backslashes_tabs_and_line_breaks_is_stored_exactly(insert, pg_dsn):
    # COPY's text format escapes these; a value spelling its null marker (\N) or end marker
    # stays text, an empty one stays empty, and the plain rows beside them stay plain.
    hostile = [
        "back\\slash", "tab\there", "line\nbreak", "carriage\rreturn", "\\N", "\\.", "",
        "é \u2028 \x01 \"quoted\"", "ends with a backslash\\",
    ]  # fmt: skip
    events = [
        build_event(
            {
                "action": f"a{i}",
                "actor_id": text,
                "target_id": text or None,
                "user_agent": text,
                "metadata": {"text": text, text: [text]},
            }
        )
        for i, text in enumerate(hostile)
    ]
    # Each alone in an otherwise plain batch, then all in one.
    for event in events:
        assert insert([*sample(2), event]) == 3
    assert insert(events) == 0
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "select actor_id, target_id, user_agent, metadata from public.audit_logs"
            " where id = any(%s) order by action",
            ([e.id for e in events],),
        ).fetchall()
    assert rows == [(e.actor_id, e.target_id, e.user_agent, e.metadata) for e in events]
