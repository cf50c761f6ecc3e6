"""Event and rate rules (issue 18) on real Postgres and PostgREST, with a real HTTP receiver:
what the audit log says is notified once per event, or once per group value over a rate."""

from __future__ import annotations

import time

import pytest

from auditq.events import AuditEvent
from auditq.stores.postgres import PostgresStore
from tests.auditq.alerts.helpers import alert_service


@pytest.fixture
def audit_store(clean_db):
    opened = PostgresStore(clean_db, timeout=5)
    yield opened
    opened.close()


def webhook(svc, receiver):
    config = {"url": receiver.url + "/hook"}
    return svc.create_channel({"name": "hook", "kind": "webhook", "config": config})


def alerts_of(receiver):
    return [alert for body in receiver.ok("/hook") for alert in body["alerts"]]


def failed_login(ip):
    return AuditEvent(action="login.failed", outcome="failure", ip=ip, actor_id="u_1")


def test_failed_logins_fire_once_naming_the_ip_over_the_threshold(
    repo, evaluators, receiver, audit_store
):
    svc = alert_service(repo)
    hook = webhook(svc, receiver)
    rule = svc.create_rule(
        {
            "name": "Failed logins from one IP",
            "kind": "event_rate",
            "match": {"action": "login.failed"},
            "group_by": "ip",
            "window_seconds": 300,
            "op": ">",
            "threshold": 20,
            "clear_threshold": 5,
            "channel_ids": [hook["id"]],
        }
    )
    ev = evaluators(repo)
    audit_store.insert_events([failed_login("203.0.113.7") for _ in range(30)])
    audit_store.insert_events([failed_login("198.51.100.2") for _ in range(5)])
    now = time.time()
    for dt in (0, 5, 10):
        assert ev.evaluate_once(now + dt) is not None
    second = evaluators(repo)  # another process, later: nothing new to say
    ev.close()
    assert second.evaluate_once(now + 15) is not None
    alerts = alerts_of(receiver)
    assert len(alerts) == 1, alerts
    assert alerts[0]["status"] == "firing"
    assert alerts[0]["labels"]["ip"] == "203.0.113.7"
    assert "30 matching events" in alerts[0]["annotations"]["description"]
    state = repo.get("alert_rule_state", rule["id"], key="rule_id")
    assert state["state"] == "firing" and list(state["groups"]) == ["203.0.113.7"]
    # The window moves past the logins: that IP resolves (send_resolved), nothing else fires.
    assert second.evaluate_once(now + 400) is not None
    alerts = alerts_of(receiver)
    assert [(a["status"], a["labels"]["ip"]) for a in alerts] == [
        ("firing", "203.0.113.7"),
        ("resolved", "203.0.113.7"),
    ]


def test_an_admin_grant_written_directly_is_notified_once_and_a_viewer_grant_not(
    repo, evaluators, receiver, audit_store
):
    svc = alert_service(repo)
    hook = webhook(svc, receiver)
    svc.create_rule(
        {
            "name": "Admin role granted",
            "kind": "event",
            "match": {"action": "role.grant", "metadata.role": ["admin", "owner"]},
            "severity": "critical",
            "channel_ids": [hook["id"]],
        }
    )
    first, second = evaluators(repo), evaluators(repo)
    assert first.evaluate_once() is not None  # the evaluator is running before the events
    admin = AuditEvent(
        action="role.grant",
        category="critical",
        actor_id="u_42",
        target_type="user",
        target_id="u_7",
        metadata={"role": "admin"},
    )
    viewer = AuditEvent(action="role.grant", actor_id="u_42", metadata={"role": "viewer"})
    audit_store.insert_events([admin], ingest_path="direct")
    audit_store.insert_events([viewer])
    audit_store.insert_events([admin])  # redelivered through the queue: the same row
    now = time.time()
    for dt in (1, 2, 3):
        first.evaluate_once(now + dt)
        second.evaluate_once(now + dt)  # not leading: does nothing
    first.close()
    assert second.evaluate_once(now + 60) is not None  # took over: nothing twice
    alerts = alerts_of(receiver)
    assert len(alerts) == 1, alerts
    assert alerts[0]["labels"]["event_id"] == str(admin.id)
    assert "role.grant by u_42 on user u_7" in alerts[0]["annotations"]["description"]


def test_a_rule_applies_to_events_from_its_creation_on(repo, evaluators, receiver, audit_store):
    svc = alert_service(repo)
    hook = webhook(svc, receiver)
    ev = evaluators(repo)
    ev.evaluate_once()
    audit_store.insert_events([AuditEvent(action="ban.lift", target_id="old")])
    time.sleep(0.01)
    svc.create_rule(
        {
            "name": "Ban lifted",
            "kind": "event",
            "match": {"action": "ban.lift"},
            "channel_ids": [hook["id"]],
        }
    )
    audit_store.insert_events([AuditEvent(action="ban.lift", target_id="new")])
    ev.evaluate_once()
    alerts = alerts_of(receiver)
    assert len(alerts) == 1, alerts
    assert "ban.lift by unknown actor on new" in alerts[0]["annotations"]["description"]


def test_the_default_event_rules_send_nothing_until_a_channel_is_picked(
    repo, evaluators, receiver, audit_store
):
    svc = alert_service(repo)
    hook = webhook(svc, receiver)
    ev = evaluators(repo, seed=True)
    ev.evaluate_once()
    rules = {r["seed_key"]: r for r in repo.list("alert_rules")}
    audit_store.insert_events([failed_login("203.0.113.9") for _ in range(21)])
    ev.evaluate_once()
    assert receiver.requests == []  # no channel yet
    state = repo.get("alert_rule_state", rules["failed_logins"]["id"], key="rule_id")
    assert state["state"] == "firing"  # it is seen on the rules page meanwhile
    svc.update_rule(rules["failed_logins"]["id"], {"channel_ids": [hook["id"]]})
    svc.update_rule(rules["ban_lifted"]["id"], {"channel_ids": [hook["id"]]})
    audit_store.insert_events([AuditEvent(action="user.unban", target_id="u_9")])
    ev.evaluate_once()
    alerts = alerts_of(receiver)
    assert sorted(a["labels"]["alertname"] for a in alerts) == [
        "A ban lifted",
        "More than 20 failed logins from one IP in 5 minutes",
    ]
