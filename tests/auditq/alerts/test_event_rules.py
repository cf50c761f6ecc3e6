"""Event and rate rules (issue 18) on real Postgres and PostgREST, with a real HTTP receiver:
what the audit log says is notified once per event, or once per group value over a rate."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import psycopg
import pytest

from auditq.alerts import content
from auditq.alerts.defaults import DEFAULT_RULES
from auditq.alerts.repo import PostgresRepo
from auditq.config import Settings
from auditq.events import AuditEvent
from auditq.queue import Queue
from auditq.seals import signing
from auditq.seals.sealer import seal_pass
from auditq.stores.postgres import PostgresStore
from tests.auditq.alerts.helpers import KEYS, alert_service
from tests.polling import wait_for
from tests.worker.helpers import (
    assert_exactly_once,
    drained,
    enqueue,
    expected_ids,
    make_events,
    row_count,
)


@pytest.fixture
def audit_store(clean_db):
    opened = PostgresStore(clean_db, timeout=5)
    yield opened
    opened.close()


@pytest.fixture
def repo_pg(clean_db):
    opened = PostgresRepo(clean_db, timeout=5)
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
    # The default rule: more than 20 failed logins from one IP in 5 minutes, clears at 5.
    (default,) = [r for r in DEFAULT_RULES if r["seed_key"] == "failed_logins"]
    fields = {k: v for k, v in default.items() if k != "seed_key"}
    rule = svc.create_rule(fields | {"channel_ids": [hook["id"]]})
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


def test_a_worker_killed_mid_drain_and_a_second_evaluator_duplicate_nothing(
    worker_procs, repo_pg, redis_client, receiver, clean_db
):
    """Real worker processes (each runs the evaluator; one leads); the leader is SIGKILLed
    while the queue drains, another takes over: each admin grant is notified exactly once."""
    svc = alert_service(repo_pg)
    hook = webhook(svc, receiver)
    svc.create_rule(
        {
            "name": "Admin role granted",
            "kind": "event",
            "match": {"action": "role.grant", "metadata.role": "admin"},
            "channel_ids": [hook["id"]],
        }
    )
    knobs = {"alert_interval": 0.3, "alert_lease": 3, "alert_allow_private": True}
    for _ in range(2):
        worker_procs.start(**knobs)
    wait_for(
        lambda: b"Admin role granted" in (redis_client.get(KEYS.alerts_config) or b""),
        "an evaluator to have read the rules",
        60,
        worker_procs.logs,
    )
    grants = [str(uuid.uuid4()) for _ in range(40)]
    payloads = make_events(3000)
    for i, grant in enumerate(grants):  # spread through the backlog
        event = {"id": grant, "action": "role.grant", "metadata": {"role": "admin"}}
        payloads.insert(i * 75, json.dumps(event))
    entry_ids = enqueue(Queue(redis_client, KEYS, 100_000), payloads)
    wait_for(lambda: row_count(clean_db) > 0, "the first rows", 60, worker_procs.logs)
    holder = (redis_client.get(KEYS.lock("alerts")) or b"").decode()
    leader = next(p for p in worker_procs.procs if f":{p.pid}:" in holder)
    os.kill(leader.pid, signal.SIGKILL)  # mid-drain, mid-evaluation perhaps
    leader.wait()
    worker_procs.start(**knobs)  # a restart: a third evaluator
    wait_for(lambda: drained(redis_client), "the backlog to drain", 120, worker_procs.logs)
    assert_exactly_once(clean_db, expected_ids(entry_ids, payloads))

    def notified() -> list[str]:
        return [a["labels"]["event_id"] for a in alerts_of(receiver)]

    wait_for(lambda: len(notified()) >= len(grants), "every grant notified", 60, worker_procs.logs)
    runs = [json.loads(redis_client.get(KEYS.alerts_status) or "{}").get("at")]
    wait_for(  # a few more evaluations, in case one were to repeat a notification
        lambda: (
            json.loads(redis_client.get(KEYS.alerts_status) or "{}").get("at", 0)
            > (runs[0] or 0) + 2
        ),
        "more evaluations",
        30,
        worker_procs.logs,
    )
    assert sorted(notified()) == sorted(grants)


def test_each_new_seal_head_is_sent_once_to_the_rules_channels(
    repo, evaluators, receiver, audit_store
):
    svc = alert_service(repo)
    hook = webhook(svc, receiver)
    svc.create_rule(
        {"name": "Seal heads off-box", "kind": "seal_head", "channel_ids": [hook["id"]]}
    )
    signer = signing.signer(Settings(seal_key=signing.generate().private))
    ev = evaluators(repo)
    ev.evaluate_once()
    assert receiver.requests == []  # nothing sealed yet
    audit_store.insert_events([AuditEvent(action="probe") for _ in range(3)])
    first = seal_pass(audit_store, signer, grace=0).head
    ev.evaluate_once()
    ev.evaluate_once()  # the same head: not sent again
    audit_store.insert_events([AuditEvent(action="probe")])
    second = seal_pass(audit_store, signer, grace=0).head
    ev.close()
    assert evaluators(repo).evaluate_once() is not None  # a restarted process
    alerts = alerts_of(receiver)
    assert [a["annotations"]["value"] for a in alerts] == ["1", "2"]  # the seal numbers
    descriptions = [a["annotations"]["description"] for a in alerts]
    assert first.hex() in descriptions[0] and second.hex() in descriptions[1]


def test_a_transaction_larger_than_a_batch_is_read_across_runs_each_event_once(
    repo, evaluators, receiver, audit_store, monkeypatch
):
    monkeypatch.setattr(content, "BATCH", 2)  # a run reads at most 2 events
    svc = alert_service(repo)
    hook = webhook(svc, receiver)
    svc.create_rule(
        {
            "name": "Ban lifted",
            "kind": "event",
            "match": {"action": "ban.lift"},
            "channel_ids": [hook["id"]],
        }
    )
    ev = evaluators(repo)
    ev.evaluate_once()
    lifted = [AuditEvent(action="ban.lift", target_id=f"u_{i}") for i in range(5)]
    audit_store.insert_events(lifted)  # one transaction
    for _ in range(4):
        ev.evaluate_once()
    assert sorted(a["labels"]["event_id"] for a in alerts_of(receiver)) == sorted(
        str(e.id) for e in lifted
    )


# Actions a text array literal must quote (comma, quotes, braces, backslash, the word NULL).
AWKWARD_ACTIONS = ["a,b", 'say "hi"', "{x}", "back\\slash", "NULL", "login.failed"]


def test_a_rate_rule_counts_exact_text_matches_and_reads_only_the_matching_rows(
    audit_store, clean_db
):
    others = [AuditEvent(action="page.view", ip="192.0.2.1") for _ in range(3000)]
    wanted = [AuditEvent(action=a, ip="192.0.2.9") for a in AWKWARD_ACTIONS for _ in range(2)]
    audit_store.insert_events(others + wanted)
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("analyze public.audit_logs")

        def counts(match):
            return conn.execute(
                "select public.alert_event_counts(%s::jsonb, 'ip', now() - interval '1 hour',"
                " now() - interval '1 day')",
                [json.dumps(match)],
            ).fetchone()[0]

        assert counts({"action": AWKWARD_ACTIONS}) == {"192.0.2.9": 12}
        # A text column never equals a number, a boolean or null: those values match nothing.
        assert counts({"action": [*AWKWARD_ACTIONS[:2], 5, True, None]}) == {"192.0.2.9": 4}
        assert counts({"action": 5}) == {}
        assert counts({"action": "page.view", "actor_id": "nobody"}) == {}
        assert counts({"action": "PAGE.VIEW"}) == {}

        # The rate rule's query runs every alert interval over its whole window: the match
        # must be answered by the (action, occurred_at) index, not by reading every row.
        match = json.dumps({"action": "login.failed"})
        predicate = conn.execute("select public.alert_match_sql(%s::jsonb)", [match]).fetchone()[0]
        (plan,) = conn.execute(
            "explain (analyze, format json) select count(*) from public.audit_logs l"
            f" where l.occurred_at >= now() - interval '1 hour' and ({predicate})"
        ).fetchone()[0]
        assert _rows_read_and_dropped(plan["Plan"]) == 0, plan


def _rows_read_and_dropped(node):
    dropped = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
    return dropped + sum(_rows_read_and_dropped(child) for child in node.get("Plans", []))
