"""Personal fields end to end (issue 15, items 2 to 4): a real worker drains encrypted
events, the API, the explorer and its exports show them to authorised readers only, and
an erasure from the dashboard (and the CLI) makes one actor's fields unreadable everywhere
while their rows stay and the seals still verify."""

from __future__ import annotations

import base64
import json
import os

import pytest

from auditq.__main__ import main
from auditq.client import AuditClient
from auditq.config import load_settings
from auditq.pii import ERASED, HIDDEN
from auditq.seals import signing
from tests.dashboard.helpers import API_TOKEN, VIEWER_PASSWORD, csrf_token, login
from tests.dumps import dump_database
from tests.polling import wait_for
from tests.worker.helpers import PREFIX, Workers, drained

KEY = base64.b64encode(os.urandom(32)).decode()
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
PEOPLE = {
    "alice": {"ip": "198.51.100.23", "user_agent": "AliceBrowser/1.0",
              "email": "alice@example.test", "name": "Alice Liddell"},
    "bob": {"ip": "2001:db8::b0b", "user_agent": "BobBrowser/2.0",
            "email": "bob@example.test", "name": "Bob Builder"},
}  # fmt: skip


@pytest.fixture
def env(monkeypatch, redis_url, clean_db):
    """The CLI's environment (seal, verify, erase) on the test database."""
    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "AUDITQ_SEAL_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    pair = signing.generate()
    values = {"DATABASE_URL": clean_db, "AUDITQ_STORE": "postgres", "REDIS_URL": redis_url,
              "AUDITQ_PII_KEY": KEY, "AUDITQ_SEAL_KEY": pair.private, "AUDITQ_SEAL_GRACE": "0",
              "AUDITQ_PREFIX": PREFIX}  # fmt: skip
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def produce(redis_url, clean_db):
    """Three queued events per person and one critical (written directly by the client)."""
    client = AuditClient(
        load_settings(
            redis_url=redis_url,
            store="postgres",
            database_url=clean_db,
            pii_key=KEY,
            prefix=PREFIX,
        )  # fmt: skip
    )
    try:
        for actor, p in PEOPLE.items():
            for i in range(3):
                result = client.log(
                    "user.login", actor_id=actor, ip=p["ip"], user_agent=p["user_agent"],
                    metadata={"email": p["email"], "name": p["name"], "plan": "pro", "n": i},
                )  # fmt: skip
                assert result.outcome == "queued"
        critical = client.log(
            "user.delete_request", category="critical", actor_id="alice",
            ip=PEOPLE["alice"]["ip"], metadata={"email": PEOPLE["alice"]["email"], "n": 9},
        )  # fmt: skip
        assert critical.outcome == "written"
    finally:
        client.close()


def api_events(client, headers=AUTH, **query):
    """Every page of GET /api/v1/events, following ``next``."""
    events, cursor, pages = [], None, 0
    while True:
        args = {**query, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/events", query_string=args, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        events += body["events"]
        pages += 1
        if not (cursor := body["next"]):
            return events, pages


def test_encrypted_after_a_drain_readable_to_readers_and_erased_everywhere(
    make_app, redis_url, redis_client, clean_db, tmp_path, env, capsys
):
    app = make_app(pii_key=KEY)
    produce(redis_url, clean_db)
    workers = Workers(tmp_path, redis_url, clean_db)
    try:
        workers.start(pii_key=KEY)
        wait_for(lambda: drained(redis_client), "the worker to drain", 60, workers.logs)
    finally:
        for proc in workers.procs:
            proc.terminate()
            proc.wait(30)

    # A superuser's view of every table: no personal field in clear.
    dump = dump_database(clean_db)
    for person in PEOPLE.values():
        for value in person.values():
            assert value not in dump
    assert "plan" in dump and "user.login" in dump  # the rest stays in clear

    # An API_TOKEN caller reads them, page by page (keyset cursor).
    api = app.test_client()
    events, pages = api_events(api, limit=2)
    assert len(events) == 7 and pages == 4
    assert len({e["id"] for e in events}) == 7
    bob = next(e for e in events if e["actor_id"] == "bob")
    assert (bob["ip"], bob["user_agent"]) == (PEOPLE["bob"]["ip"], PEOPLE["bob"]["user_agent"])
    assert bob["metadata"]["email"] == PEOPLE["bob"]["email"] and "pii" not in bob
    alice, _ = api_events(api, actor_id="alice")
    assert len(alice) == 4 and {e["metadata"]["email"] for e in alice} == {"alice@example.test"}

    # A viewer sees them masked, in the API and in the explorer.
    viewer = app.test_client()
    assert login(viewer, VIEWER_PASSWORD).status_code == 303
    masked, _ = api_events(viewer, headers={}, actor_id="bob")
    assert {e["metadata"]["email"] for e in masked} == {HIDDEN} and masked[0]["ip"] == HIDDEN
    page = viewer.get("/explorer/?actor_id=bob").get_data(as_text=True)
    assert HIDDEN in page and PEOPLE["bob"]["email"] not in page
    assert viewer.post("/privacy/erase", data={"actor_id": "bob"}).status_code in (400, 403)

    # Seal everything, then erase alice from the dashboard.
    assert main(["seal"]) == 0
    admin = app.test_client()
    assert login(admin).status_code == 303
    token = csrf_token(admin, "/privacy/")
    assert admin.post("/privacy/erase", data={"actor_id": "alice"}).status_code == 400  # CSRF
    typo = {"actor_id": "alice", "confirm": "alicee", "csrf_token": token}
    assert admin.post("/privacy/erase", data=typo).status_code == 303
    assert len(api_events(api, actor_id="alice")[0]) == 4
    assert {e["metadata"]["email"] for e in api_events(api, actor_id="alice")[0]} != {ERASED}
    done = admin.post(
        "/privacy/erase",
        data={"actor_id": "alice", "confirm": "alice", "csrf_token": token},
        follow_redirects=True,
    )
    assert "Erased the personal fields of actor" in done.get_data(as_text=True)
    again = admin.post(
        "/privacy/erase",
        data={"actor_id": "alice", "confirm": "alice", "csrf_token": token},
        follow_redirects=True,
    )
    assert "unknown, or erased already" in again.get_data(as_text=True)

    # Alice's rows stay, their personal fields read as erased: API, explorer, exports.
    alice, _ = api_events(api, actor_id="alice")
    assert len(alice) == 4
    for event in alice:
        assert event["ip"] == ERASED and event["metadata"]["email"] == ERASED
        assert event["action"].startswith("user.")
    assert {e["metadata"]["name"] for e in alice if e["action"] == "user.login"} == {ERASED}
    bob, _ = api_events(api, actor_id="bob")
    assert {e["metadata"]["email"] for e in bob} == {PEOPLE["bob"]["email"]}  # others intact
    for path in ("/explorer/?actor_id=alice", "/explorer/export.csv", "/explorer/export.ndjson"):
        text = admin.get(path).get_data(as_text=True)
        assert ERASED in text and PEOPLE["alice"]["email"] not in text
        assert PEOPLE["alice"]["ip"] not in text and PEOPLE["alice"]["name"] not in text
    assert PEOPLE["bob"]["email"] in admin.get("/explorer/export.ndjson").get_data(as_text=True)

    # The erasure is a critical audit event: who erased which subject, none of the data.
    (erasure,) = api_events(api, action="auditq.pii.erase")[0]
    assert erasure["category"] == "critical" and erasure["actor_id"] == "admin"
    assert (erasure["target_type"], erasure["target_id"]) == ("subject", "alice")
    assert PEOPLE["alice"]["email"] not in json.dumps(erasure)

    # The seals still verify; then the CLI erases bob: unknown and repeated say so.
    capsys.readouterr()
    assert main(["verify"]) == 0
    assert main(["erase", "--actor", "bob"]) == 0
    assert main(["erase", "--actor", "bob"]) == 1
    assert main(["erase", "--actor", "nobody"]) == 1
    assert "nothing changed" in capsys.readouterr().out
    bob, _ = api_events(api, actor_id="bob")
    assert len(bob) == 3 and {e["user_agent"] for e in bob} == {ERASED}
    by_cli = [e for e in api_events(api, action="auditq.pii.erase")[0] if e["target_id"] == "bob"]
    assert len(by_cli) == 1 and by_cli[0]["actor_type"] == "cli"
    assert main(["seal"]) == 0 and main(["verify"]) == 0
