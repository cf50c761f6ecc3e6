"""Dead letters (dashboard/views/dead_letters.py, dashboard/dead_letters.py): list, inspect,
requeue one or all, discard; every action audit-logged."""

from __future__ import annotations

import json
import uuid

import psycopg

from auditq.decoding import ENTRY_ID_NAMESPACE, decode_entry
from auditq.queue import Queue
from dashboard import dead_letters as dl
from tests.dashboard.helpers import add_dead_letter, csrf_token


def audit_rows(dsn: str, action: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "select actor_type, actor_id, target_id, metadata, category from public.audit_logs"
            " where action = %s order by occurred_at",
            (action,),
        ).fetchall()


def queued(redis_client, keys) -> list[dict]:
    return [json.loads(f[b"event"]) for _, f in redis_client.xrange(keys.stream)]


def test_the_list_shows_reasons_newest_first(admin, redis_client, keys):
    add_dead_letter(redis_client, keys, {"action": "first.one"}, reason="postgres 23502: null")
    add_dead_letter(redis_client, keys, "not json at all", reason="event: is not valid JSON")
    html = admin.get("/dead-letters/").get_data(as_text=True)
    assert "postgres 23502: null" in html and "event: is not valid JSON" in html
    assert html.index("is not valid JSON") < html.index("first.one")
    assert "unreadable event" in html
    assert '<small id="dead-total">2</small>' in html


def test_the_list_is_paged_with_a_bounded_read(admin, redis_client, keys):
    for i in range(dl.PAGE_SIZE + 5):
        add_dead_letter(redis_client, keys, {"action": f"page.{i:03d}"})
    first = admin.get("/dead-letters/").get_data(as_text=True)
    assert first.count('data-testid="requeue"') == dl.PAGE_SIZE
    assert "page.054" in first and "page.004" not in first
    older = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    second = admin.get(older.replace("&amp;", "&")).get_data(as_text=True)
    assert second.count('data-testid="requeue"') == 5
    assert "page.004" in second and "page.005" not in second


def test_inspect_shows_the_event_escaped(admin, redis_client, keys):
    dead = add_dead_letter(
        redis_client, keys, {"action": "x", "metadata": {"html": "<script>alert(1)</script>"}}
    )
    html = admin.get(f"/dead-letters/{dead}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert admin.get("/dead-letters/1-1").status_code == 404
    assert admin.get("/dead-letters/not-an-id").status_code == 404


def test_requeue_moves_the_original_event_back_and_audit_logs_it(
    admin, redis_client, keys, clean_db
):
    event = {"id": str(uuid.uuid4()), "action": "user.ban", "metadata": {"n": 1}}
    dead = add_dead_letter(redis_client, keys, event)
    response = admin.post(f"/dead-letters/{dead}/requeue", data={"csrf_token": csrf_token(admin)})
    assert response.status_code == 303
    assert redis_client.xlen(keys.dead) == 0
    # The original event, with the time of its first entry if it had none of its own.
    assert queued(redis_client, keys) == [{**event, "occurred_at": "2023-11-14T22:13:20+00:00"}]
    assert "Requeued dead letter" in admin.get(response.headers["Location"]).text

    ((actor_type, actor_id, target_id, metadata, category),) = audit_rows(
        clean_db, "auditq.dead_letter.requeue"
    )
    assert (actor_type, actor_id, target_id, category) == ("dashboard", "admin", dead, "critical")
    assert metadata["event_id"] == event["id"] and metadata["dead_letter_id"] == dead


def test_an_event_without_an_id_keeps_the_one_derived_from_its_first_entry(
    admin, redis_client, keys
):
    dead = add_dead_letter(redis_client, keys, {"action": "no.id"}, entry_id="1700000000123-4")
    admin.post(f"/dead-letters/{dead}/requeue", data={"csrf_token": csrf_token(admin)})
    ((entry_id, fields),) = redis_client.xrange(keys.stream)
    event = decode_entry(entry_id.decode(), fields, 65_536)
    # The id the worker gave it the first time, so a requeue cannot make a second row.
    assert event.id == uuid.uuid5(ENTRY_ID_NAMESPACE, "1700000000123-4")
    assert event.occurred_at.timestamp() == 1700000000.123


def test_requeue_with_the_queue_full_says_so_and_keeps_the_dead_letter(make_app, redis_client):
    from tests.dashboard.helpers import login

    app = make_app(max_queue=1)
    keys = app.extensions["auditq"].keys
    c = app.test_client()
    login(c)
    redis_client.xadd(keys.stream, {"event": json.dumps({"action": "filler"})})
    dead = add_dead_letter(redis_client, keys, {"action": "waiting"})
    response = c.post(f"/dead-letters/{dead}/requeue", data={"csrf_token": csrf_token(c)})
    assert response.status_code == 303
    assert "The queue is full" in c.get(response.headers["Location"]).text
    assert redis_client.xlen(keys.dead) == 1
    assert redis_client.xlen(keys.stream) == 1


def test_requeue_all_moves_everything_in_chunks(admin, redis_client, keys, clean_db):
    total = dl.CHUNK * 2 + 17
    for i in range(total):
        add_dead_letter(redis_client, keys, {"action": "bulk", "metadata": {"i": i}})
    response = admin.post("/dead-letters/requeue-all", data={"csrf_token": csrf_token(admin)})
    assert f"Requeued {total} dead letters." in admin.get(response.headers["Location"]).text
    assert redis_client.xlen(keys.dead) == 0
    assert sorted(e["metadata"]["i"] for e in queued(redis_client, keys)) == list(range(total))
    chunks = audit_rows(clean_db, "auditq.dead_letter.requeue_all")
    assert [row[3]["count"] for row in chunks] == [dl.CHUNK, dl.CHUNK, 17]
    assert sum(len(row[3]["dead_letter_ids"]) for row in chunks) == total


def test_requeue_all_stops_when_the_queue_fills(make_app, redis_client):
    from tests.dashboard.helpers import login

    app = make_app(max_queue=10)
    keys = app.extensions["auditq"].keys
    c = app.test_client()
    login(c)
    for i in range(25):
        add_dead_letter(redis_client, keys, {"action": "bulk", "metadata": {"i": i}})
    response = c.post("/dead-letters/requeue-all", data={"csrf_token": csrf_token(c)})
    page = c.get(response.headers["Location"]).text
    assert "Requeued 10." in page and "The queue is full" in page
    assert redis_client.xlen(keys.stream) == 10
    assert redis_client.xlen(keys.dead) == 15
    # The oldest went first, and nothing was lost or doubled.
    assert sorted(e["metadata"]["i"] for e in queued(redis_client, keys)) == list(range(10))


def test_requeue_all_is_capped_per_request(app, redis_client, keys):
    res = app.extensions["auditq"]
    for i in range(12):
        add_dead_letter(redis_client, keys, {"action": "bulk", "metadata": {"i": i}})
    chunks = list(dl.requeue_chunks(res, limit=5))
    assert sum(len(c.moved) for c in chunks) == 5
    assert chunks[-1].remaining
    assert redis_client.xlen(keys.dead) == 7


def test_discard_deletes_it_and_the_audit_log_keeps_the_event(admin, redis_client, keys, clean_db):
    dead = add_dead_letter(redis_client, keys, {"action": "gone", "metadata": {"k": "v"}})
    keep = add_dead_letter(redis_client, keys, {"action": "stays"})
    response = admin.post(f"/dead-letters/{dead}/discard", data={"csrf_token": csrf_token(admin)})
    assert "Discarded dead letter" in admin.get(response.headers["Location"]).text
    assert [eid.decode() for eid, _ in redis_client.xrange(keys.dead)] == [keep]
    assert redis_client.xlen(keys.stream) == 0
    ((_, actor_id, target_id, metadata, _),) = audit_rows(clean_db, "auditq.dead_letter.discard")
    assert (actor_id, target_id) == ("admin", dead)
    assert json.loads(metadata["event"]) == {"action": "gone", "metadata": {"k": "v"}}


def test_acting_on_a_dead_letter_that_is_gone_says_so(admin):
    token = csrf_token(admin)
    for action in ("requeue", "discard"):
        response = admin.post(f"/dead-letters/1-1/{action}", data={"csrf_token": token})
        assert response.status_code == 303
        assert "is gone" in admin.get(response.headers["Location"]).text


# --- hostile dead letters (issue 10, item 3) ----------------------------------------------

DEEP_EVENT = '{"action": "deep", "metadata": ' + '{"a": ' * 1000 + "1" + "}" * 1001


def test_a_1000_deep_dead_letter_can_be_listed_inspected_requeued_and_discarded(
    admin, redis_client, keys, clean_db
):
    deep = [add_dead_letter(redis_client, keys, DEEP_EVENT) for _ in range(3)]
    add_dead_letter(redis_client, keys, {"action": "plain"})
    token = csrf_token(admin)

    listing = admin.get("/dead-letters/")
    assert listing.status_code == 200 and listing.text.count("unreadable event") == 3
    detail = admin.get(f"/dead-letters/{deep[0]}")
    assert detail.status_code == 200
    assert "nested too deep to read" in detail.text and "{&#34;a&#34;: {&#34;a&#34;" in detail.text

    assert (
        admin.post(f"/dead-letters/{deep[0]}/discard", data={"csrf_token": token}).status_code
        == 303
    )
    ((_, _, _, metadata, _),) = audit_rows(clean_db, "auditq.dead_letter.discard")
    assert metadata["event"] == DEEP_EVENT
    assert (
        admin.post(f"/dead-letters/{deep[1]}/requeue", data={"csrf_token": token}).status_code
        == 303
    )
    response = admin.post("/dead-letters/requeue-all", data={"csrf_token": token})
    assert "Requeued 2 dead letters." in admin.get(response.headers["Location"]).text
    assert redis_client.xlen(keys.dead) == 0
    # Sent back as it was: the worker refuses it again, with its reason.
    raw = [f[b"event"].decode() for _, f in redis_client.xrange(keys.stream)]
    assert raw.count(DEEP_EVENT) == 2


def dead_letter_as_the_worker_writes_it(redis_client, keys, event: str, max_bytes=65_536) -> str:
    queue = Queue(redis_client, keys, max_len=1_000_000)
    queue.ensure_group()
    (entry_id,) = queue.enqueue([("normal", event)])
    (entry,) = queue.read("w1", count=1)
    queue.dead_letter(
        [(entry, f"event: is {len(event)} bytes, over the limit")], max_bytes=max_bytes
    )
    return redis_client.xrevrange(keys.dead, count=1)[0][0].decode()


def test_a_10_mb_event_makes_a_small_page_and_can_only_be_discarded(
    admin, redis_client, keys, clean_db
):
    blob = '{"action": "huge", "metadata": {"blob": "' + "x" * 10_000_000 + '"}}'
    dead = dead_letter_as_the_worker_writes_it(redis_client, keys, blob)
    other = add_dead_letter(redis_client, keys, {"action": "plain"})
    token = csrf_token(admin)

    listing = admin.get("/dead-letters/").text
    assert f"(truncated, {len(blob)} bytes)" in listing and len(listing) < 100_000
    detail = admin.get(f"/dead-letters/{dead}").text
    assert len(detail) < 100_000
    assert f"of this {len(blob)}-byte event were kept" in detail
    assert f"/dead-letters/{dead}/requeue" not in detail

    response = admin.post(f"/dead-letters/{dead}/requeue", data={"csrf_token": token})
    assert "cannot be requeued" in admin.get(response.headers["Location"]).text
    response = admin.post("/dead-letters/requeue-all", data={"csrf_token": token})
    assert "1 truncated" in admin.get(response.headers["Location"]).text
    assert [eid.decode() for eid, _ in redis_client.xrange(keys.dead)] == [dead]
    assert len(queued(redis_client, keys)) == 1  # the plain one only
    assert other not in [eid.decode() for eid, _ in redis_client.xrange(keys.dead)]

    admin.post(f"/dead-letters/{dead}/discard", data={"csrf_token": token})
    assert redis_client.xlen(keys.dead) == 0
    ((_, _, _, metadata, _),) = audit_rows(clean_db, "auditq.dead_letter.discard")
    assert metadata["event_bytes"] == len(blob) and metadata["event_truncated"] is True


def test_a_large_dead_letter_written_before_truncation_still_makes_a_bounded_page(
    admin, redis_client, keys
):
    dead = add_dead_letter(redis_client, keys, "y" * 5_000_000)
    detail = admin.get(f"/dead-letters/{dead}")
    assert detail.status_code == 200 and len(detail.text) < 100_000
    assert f"Showing the first {dl.SHOW_CHARS} characters" in detail.text


def test_a_dead_letter_holding_nul_bytes_can_be_discarded_and_audit_logged(
    admin, redis_client, keys, clean_db
):
    dead = add_dead_letter(redis_client, keys, '{"action": "a\x00b", "id": "\x00"}')
    response = admin.post(f"/dead-letters/{dead}/discard", data={"csrf_token": csrf_token(admin)})
    assert response.status_code == 303
    assert redis_client.xlen(keys.dead) == 0
    ((_, _, _, metadata, _),) = audit_rows(clean_db, "auditq.dead_letter.discard")
    assert metadata["event"] == '{"action": "a\ufffdb", "id": "\ufffd"}'


def test_an_admin_action_from_a_user_agent_with_a_nul_is_audit_logged_without_it(
    admin, redis_client, keys, clean_db
):
    # The User-Agent header is the requester's to choose; the audit record of the action must
    # not turn into an invalid event (and the action into a 500) because of it.
    dead = add_dead_letter(redis_client, keys, {"action": "gone"})
    response = admin.post(
        f"/dead-letters/{dead}/discard",
        data={"csrf_token": csrf_token(admin)},
        headers={"User-Agent": "curl/8\x00evil"},
    )
    assert response.status_code == 303
    with psycopg.connect(clean_db) as conn:
        (user_agent,) = conn.execute(
            "select user_agent from public.audit_logs where action = 'auditq.dead_letter.discard'"
        ).fetchone()
    assert user_agent == "curl/8evil"
