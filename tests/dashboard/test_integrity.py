"""The Integrity page and GET /api/v1/integrity (dashboard/integrity.py and its views)."""

from __future__ import annotations

import re

import pytest

from auditq.client import AuditClient
from auditq.config import Settings
from auditq.seals import signing
from auditq.seals.sealer import seal_pass
from auditq.stores.postgres import PostgresStore
from tests.auditq.seals.helpers import events, superuser
from tests.dashboard.helpers import API_TOKEN, csrf_token, login
from tests.polling import wait_for

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
PAIR = signing.generate()


@pytest.fixture
def app(make_app):
    return make_app(seal_key=PAIR.private)


@pytest.fixture
def sealed(clean_db):
    store = PostgresStore(clean_db)
    batch = events(5)
    store.insert_events(batch)
    head = seal_pass(store, signing.signer(Settings(seal_key=PAIR.private)), grace=0).head
    store.insert_events(events(2, start=5))  # not sealed yet
    store.close()
    return batch, head.hex()


def test_the_api_returns_the_head_and_the_backlog(client, sealed):
    assert client.get("/api/v1/integrity").status_code == 401
    body = client.get("/api/v1/integrity", headers=BEARER).json
    assert body["head"]["hash"] == sealed[1]
    assert body["head"]["rows_sealed"] == 5 and body["head"]["seal_no"] == 1
    assert len(body["head"]["signature"]) == 128 and body["head"]["sealed_at"]
    assert body["unsealed"]["rows"] == 2
    assert body["reconciliation"]["gap"] == 0 and len(body["reconciliation"]["hours"]) == 24


def test_the_api_with_no_seal_yet(client, clean_db):
    body = client.get("/api/v1/integrity", headers=BEARER).json
    assert body["head"] is None and body["unsealed"]["rows"] == 0


def test_an_event_that_left_the_queue_unaccounted_is_a_red_gap(
    admin, make_settings, redis_client, keys
):
    AuditClient(make_settings(), redis_client=redis_client).log_many([{"action": "a"}] * 3)
    assert admin.get("/api/v1/integrity").json["reconciliation"]["gap"] == 0
    (entry_id, _), *_ = redis_client.xrange(keys.stream, count=1)
    redis_client.xdel(keys.stream, entry_id)  # gone with no count: lost
    body = admin.get("/api/v1/integrity").json["reconciliation"]
    assert body["gap"] == 1 and body["hours"][0]["gap"] == 1
    page = admin.get("/integrity/").get_data(as_text=True)
    assert 'class="gap"' in page and 'id="reconciliation-gap">1<' in page


def test_viewers_see_the_page_but_cannot_verify(app, sealed):
    viewer = app.test_client()
    login(viewer, "viewer-only-password")
    page = viewer.get("/integrity/").get_data(as_text=True)
    assert sealed[1] in page and "verify-now" not in page
    token = csrf_token(viewer, "/integrity/")
    assert viewer.post("/integrity/verify", data={"csrf_token": token}).status_code == 403


def test_verify_now_needs_csrf_and_reports_findings(admin, sealed, clean_db, keys, redis_client):
    assert admin.post("/integrity/verify").status_code == 400  # no CSRF token
    page = admin.get("/integrity/").get_data(as_text=True)
    assert "verify-now" in page and "never" in page

    def verified():
        fragment = admin.get("/integrity/", headers={"HX-Request": "true"}).get_data(as_text=True)
        state = re.search(r'id="verify-state">([^<]*)<', fragment).group(1)
        return state not in ("running", "never") and fragment

    token = csrf_token(admin, "/integrity/")
    assert admin.post("/integrity/verify", data={"csrf_token": token}).status_code == 303
    assert 'id="verify-state">intact<' in wait_for(verified, "the background verify")

    edited = str(sealed[0][1].id)
    with superuser(clean_db) as conn:
        conn.execute("update audit_logs set actor_id = '<b>x</b>' where id = %s", [edited])
    admin.post("/integrity/verify", data={"csrf_token": token})
    fragment = wait_for(lambda: "finding(s)" in (v := verified() or "") and v, "the findings")
    assert "1 finding(s)" in fragment and edited in fragment and "modified" in fragment
    # The verify itself is an admin action in the audit log.
    with superuser(clean_db) as conn:
        logged = conn.execute(
            "select count(*) from audit_logs where action = 'auditq.integrity.verify'"
        ).fetchone()[0]
    assert logged == 2
