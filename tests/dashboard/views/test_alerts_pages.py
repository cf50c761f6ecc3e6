"""The alerts pages: rules with their current values and states, forms with validation
errors, masked channel secrets, test notifications, silences, history, the overview's
firing-alerts summary; admin-only changes, CSRF on every form, changes audit-logged."""

from __future__ import annotations

import re
import time

import psycopg
import pytest

from auditq.alerts.defaults import seed_defaults
from auditq.alerts.evaluator import Evaluator
from auditq.alerts.repo import PostgresRepo
from auditq.alerts.service import AlertService
from tests.auditq.alerts.helpers import Receiver
from tests.dashboard.helpers import csrf_token

SLACK_URL = "https://hooks.slack.com/services/T0000/B0000/SECRETSECRETwxyz"


@pytest.fixture
def repo(clean_db):
    opened = PostgresRepo(clean_db)
    yield opened
    opened.close()


@pytest.fixture
def app(make_app):
    return make_app(alert_allow_private=True)  # the receivers listen on 127.0.0.1


@pytest.fixture
def svc(repo, redis_client, app):
    return AlertService(repo, redis_client, app.extensions["auditq"].settings)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def form(client, path, data, page="/alerts/"):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, page)})


RULE_FORM = {
    "name": "Lag",
    "metric": "lag_seconds",
    "op": ">",
    "threshold": "60",
    "clear_threshold": "30",
    "for_seconds": "120",
    "keep_firing_seconds": "",
    "repeat_seconds": "0",
    "no_data": "keep",
    "severity": "error",
    "send_resolved": "1",
    "enabled": "1",
}


def test_rules_show_their_current_value_threshold_and_state(admin, svc, repo, redis_client, keys):
    seed_defaults(repo)
    for _ in range(3):
        redis_client.xadd(keys.stream, {"event": "{}"})
    html = admin.get("/alerts/").get_data(as_text=True)
    row = re.search(r'data-rule-name="Queue length above 5,000".*?</tr>', html, re.S).group(0)
    assert 'class="current-value">3<' in row
    assert "queue_length &gt; 5,000" in row and 'data-state="normal"' in row
    assert "No live worker for 30 s" in html
    assert 'id="no-channels"' in html  # the defaults notify no one: the page says so


def test_create_a_rule_with_the_form_and_see_validation_errors(admin, svc, clean_db):
    channel = svc.create_channel({"name": "ops", "kind": "slack", "config": {"url": SLACK_URL}})
    bad = form(
        admin, "/alerts/rules/new", {**RULE_FORM, "threshold": "lots", "clear_threshold": "90"}
    )
    assert bad.status_code == 400
    html = bad.get_data(as_text=True)
    assert 'id="form-errors"' in html
    assert re.search(r'field invalid">\s*<label for="f-threshold"', html)
    assert 'value="lots"' in html  # what was typed comes back to be fixed
    ok = form(admin, "/alerts/rules/new", {**RULE_FORM, "channel_ids": channel["id"]})
    assert ok.status_code == 303
    (rule,) = svc.list_rules()
    assert (rule["threshold"], rule["clear_threshold"], rule["for_seconds"]) == (60, 30, 120)
    assert rule["keep_firing_seconds"] == 0 and rule["channel_ids"] == [channel["id"]]
    assert "Rule “Lag” created." in admin.get("/alerts/").get_data(as_text=True)
    # edit: a bad clear threshold is named, a good edit is saved and audit-logged
    bad_edit = form(
        admin, f"/alerts/rules/{rule['id']}/edit", {**RULE_FORM, "clear_threshold": "61"}
    )
    assert bad_edit.status_code == 400
    assert "must not be above the threshold" in bad_edit.get_data(as_text=True)
    edited = form(admin, f"/alerts/rules/{rule['id']}/edit", {**RULE_FORM, "threshold": "90"})
    assert edited.status_code == 303
    assert svc.get_rule(rule["id"])["threshold"] == 90
    assert svc.get_rule(rule["id"])["channel_ids"] == []  # unticked in this post
    with psycopg.connect(clean_db) as conn:
        logged = conn.execute(
            "select action, target_id, metadata, category from public.audit_logs"
            " where action like 'auditq.alert_rule.%%' order by received_at"
        ).fetchall()
    assert [row[0] for row in logged] == ["auditq.alert_rule.create", "auditq.alert_rule.update"]
    assert logged[1][1] == rule["id"] and logged[1][3] == "critical"
    assert logged[1][2]["changes"]["threshold"] == {"from": 60, "to": 90}
    assert form(admin, f"/alerts/rules/{rule['id']}/delete", {}).status_code == 303
    assert svc.list_rules() == []


def test_the_rule_form_adapts_to_the_kind_and_previews_the_match(admin, svc, clean_db):
    page = admin.get("/alerts/rules/new?kind=event_rate").get_data(as_text=True)
    assert 'name="match"' in page and 'name="group_by"' in page and 'name="window_seconds"' in page
    assert 'name="metric"' not in page and 'name="for_seconds"' not in page
    event_page = admin.get("/alerts/rules/new?kind=event").get_data(as_text=True)
    assert 'name="match"' in event_page and 'name="threshold"' not in event_page
    assert 'name="metric"' in admin.get("/alerts/rules/new").get_data(as_text=True)
    with psycopg.connect(clean_db) as conn:  # two grants an hour ago or less, one older
        conn.execute(
            "insert into public.audit_logs (id, occurred_at, action, metadata) values"
            " (gen_random_uuid(), now(), 'role.grant', '{\"role\": \"admin\"}'),"
            " (gen_random_uuid(), now() - interval '10 minutes', 'role.grant', '{}'),"
            " (gen_random_uuid(), now() - interval '2 hours', 'role.grant', '{}')"
        )
    preview = admin.get('/alerts/rules/preview?match={"action": "role.grant"}')
    assert "preview: 2 events matched in the last hour" in preview.get_data(as_text=True)
    one = admin.get('/alerts/rules/preview?match={"metadata.role": ["admin", "owner"]}')
    assert "preview: 1 event matched in the last hour" in one.get_data(as_text=True)
    bad = admin.get('/alerts/rules/preview?match={"acton": "x"}').get_data(as_text=True)
    assert "unknown field" in bad
    fields = {"name": "Admin", "kind": "event", "severity": "critical", "enabled": "1"}
    refused = form(admin, "/alerts/rules/new", {**fields, "match": "{}"})
    assert refused.status_code == 400 and "at least one field" in refused.get_data(as_text=True)
    created = form(admin, "/alerts/rules/new", {**fields, "match": '{"action": "role.grant"}'})
    assert created.status_code == 303
    (rule,) = svc.list_rules()
    assert rule["kind"] == "event" and rule["match"] == {"action": "role.grant"}
    edit = admin.get(f"/alerts/rules/{rule['id']}/edit").get_data(as_text=True)
    assert 'value="{&#34;action&#34;: &#34;role.grant&#34;}"' in edit
    assert "event matches action=role.grant" in admin.get("/alerts/").get_data(as_text=True)


def test_every_form_needs_csrf(admin, svc):
    response = admin.post("/alerts/rules/new", data=RULE_FORM)
    assert response.status_code == 400
    assert svc.list_rules() == []


def test_the_viewer_reads_but_cannot_change(viewer, svc):
    rule = svc.create_rule({"name": "r", "metric": "dead_letters", "op": ">", "threshold": 0})
    channel = svc.create_channel({"name": "ops", "kind": "slack", "config": {"url": SLACK_URL}})
    for path in ("/alerts/", "/alerts/channels", "/alerts/silences", "/alerts/history"):
        page = viewer.get(path)
        assert page.status_code == 200
        assert "/delete" not in page.get_data(as_text=True)
    assert viewer.get("/alerts/rules/new").status_code == 403
    assert viewer.get(f"/alerts/rules/{rule['id']}/edit").status_code == 403
    token = csrf_token(viewer, "/alerts/")
    for path in (
        "/alerts/rules/new",
        f"/alerts/rules/{rule['id']}/delete",
        f"/alerts/channels/{channel['id']}/test",
        "/alerts/silences",
    ):
        assert viewer.post(path, data={**RULE_FORM, "csrf_token": token}).status_code == 403
    assert len(svc.list_rules()) == 1


def test_channel_secrets_are_masked_everywhere(admin, svc):
    channel = svc.create_channel({"name": "ops", "kind": "slack", "config": {"url": SLACK_URL}})
    email = svc.create_channel(
        {
            "name": "mail",
            "kind": "email",
            "config": {
                "host": "smtp.example.com",
                "from": "a@example.com",
                "to": "b@example.com",
                "username": "u",
                "password": "hunter2hunter2",
            },
        }
    )
    pages = [
        admin.get(p).get_data(as_text=True)
        for p in (
            "/alerts/channels",
            f"/alerts/channels/{channel['id']}/edit",
            f"/alerts/channels/{email['id']}/edit",
        )
    ]
    for html in pages:
        assert "SECRETSECRET" not in html and "hunter2" not in html
    assert "https://hooks.slack.com/…wxyz" in pages[0]
    # saving the edit form with the secret left empty keeps it
    saved = form(
        admin,
        f"/alerts/channels/{channel['id']}/edit",
        {"name": "ops2", "kind": "slack", "enabled": "1"},
    )
    assert saved.status_code == 303
    stored = svc.repo.get("alert_channels", channel["id"])
    assert stored["name"] == "ops2" and stored["config"]["url"] == SLACK_URL
    bad = form(
        admin, "/alerts/channels/new", {"name": "x", "kind": "slack", "config.url": "not a url"}
    )
    assert bad.status_code == 400 and "must be an http(s):// URL" in bad.get_data(as_text=True)


def test_send_a_test_notification_from_the_channels_page(admin, svc, receiver):
    channel = svc.create_channel(
        {"name": "ops", "kind": "slack", "config": {"url": receiver.url + "/slack"}}
    )
    response = form(admin, f"/alerts/channels/{channel['id']}/test", {}, "/alerts/channels")
    assert response.status_code == 303
    (body,) = receiver.bodies()
    assert body["text"].startswith(":rotating_light: *[TEST] [FIRING]")
    page = admin.get("/alerts/channels").get_data(as_text=True)
    assert "Test notification sent to “ops”" in page
    history = admin.get("/alerts/history").get_data(as_text=True)
    assert "status-sent" in history and "history-test" in history


def test_silences_and_history_pages(admin, svc, repo, settings_for_eval, redis_client, receiver):
    channel = svc.create_channel(
        {"name": "ops", "kind": "slack", "config": {"url": receiver.url + "/slack"}}
    )
    rule = svc.create_rule(
        {
            "name": "Dead letters",
            "metric": "dead_letters",
            "op": ">",
            "threshold": 0,
            "channel_ids": [channel["id"]],
        }
    )
    assert (
        form(
            admin,
            "/alerts/silences",
            {"rule_id": rule["id"], "minutes": "60", "comment": "migrating"},
        ).status_code
        == 303
    )
    page = admin.get("/alerts/silences").get_data(as_text=True)
    assert "migrating" in page and 'badge-denied">active' in page
    receiver.script(400)
    redis_client.xadd(svc.keys.dead, {"event": "{}", "reason": "bad"})
    ev = Evaluator(settings_for_eval, redis_client, repo)
    try:
        ev.evaluate_once()  # firing, but silenced: nothing sent
        (silence,) = svc.list_silences()
        assert form(admin, f"/alerts/silences/{silence['id']}/end", {}).status_code == 303
        ev.evaluate_once(time.time() + 1)  # the trigger goes out now, and gets a 400
    finally:
        ev.close()
    assert len(receiver.requests) == 1
    history = admin.get("/alerts/history").get_data(as_text=True)
    assert "status-failed" in history and "HTTP 400" in history
    assert 'data-state="firing"' in history
    rules_page = admin.get("/alerts/").get_data(as_text=True)
    assert 'data-state="firing"' in rules_page


def test_the_overview_lists_firing_alerts(admin, svc, repo, settings_for_eval, redis_client):
    svc.create_rule(
        {
            "name": "Anything dead",
            "metric": "dead_letters",
            "op": ">",
            "threshold": 0,
            "severity": "critical",
        }
    )
    assert 'id="firing-alerts"' not in admin.get("/").get_data(as_text=True)
    redis_client.xadd(svc.keys.dead, {"event": "{}", "reason": "bad"})
    ev = Evaluator(settings_for_eval, redis_client, repo)
    try:
        ev.evaluate_once()
    finally:
        ev.close()
    html = admin.get("/", headers={"HX-Request": "true"}).get_data(as_text=True)
    section = re.search(r'id="firing-alerts".*?</section>', html, re.S).group(0)
    assert "Anything dead" in section and "1 alert firing" in section
    assert "badge-critical" in section


def test_no_alerts_page_has_inline_script_or_style(admin, svc):
    rule = svc.create_rule({"name": "r", "metric": "dead_letters", "op": ">", "threshold": 0})
    channel = svc.create_channel(
        {"name": "c", "kind": "email", "config": {"host": "h", "from": "a@b.co", "to": "c@d.co"}}
    )
    for path in (
        "/alerts/",
        "/alerts/rules/new",
        f"/alerts/rules/{rule['id']}/edit",
        "/alerts/channels",
        "/alerts/channels/new?kind=email",
        f"/alerts/channels/{channel['id']}/edit",
        "/alerts/silences",
        "/alerts/history",
    ):
        response = admin.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert " onclick=" not in html


@pytest.fixture
def settings_for_eval(app):
    return app.extensions["auditq"].settings
