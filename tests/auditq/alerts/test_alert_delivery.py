"""The evaluator end to end: real Redis state in, real HTTP and SMTP receivers out.

The clock is explicit (``evaluate_once(now=...)``); nothing here asserts on timing.
"""

import time

import pytest

from auditq.alerts.evaluator import Evaluator
from auditq.alerts.repo import PostgresRepo
from tests.auditq.alerts.helpers import alert_service as service
from tests.auditq.alerts.helpers import email_channel, set_queue


def slack(svc, receiver, name="slack", path="/slack"):
    return svc.create_channel(
        {"name": name, "kind": "slack", "config": {"url": receiver.url + path}}
    )


def queue_rule(svc, channels, **kw):
    data = {
        "name": "Queue too long",
        "metric": "queue_length",
        "op": ">",
        "threshold": 10,
        "clear_threshold": 5,
        "for_seconds": 30,
        "severity": "critical",
        "channel_ids": [c["id"] for c in channels],
    }
    return svc.create_rule(data | kw)


def outbox(repo):
    return repo.list("alert_outbox", order="created_at")


def history(repo, event="delivery"):
    return [h for h in repo.list("alert_history", order="happened_at") if h["event"] == event]


def test_fires_once_after_the_for_duration_and_resolves_once(
    repo, evaluators, redis_client, receiver
):
    svc = service(repo)
    queue_rule(svc, [slack(svc, receiver)])
    ev = evaluators(repo)
    t = time.time()
    set_queue(redis_client, 20)
    for dt in (0, 10, 20):
        ev.evaluate_once(t + dt)
    assert receiver.requests == []
    assert repo.list("alert_rule_state")[0]["state"] == "pending"
    ev.evaluate_once(t + 31)
    assert len(receiver.requests) == 1
    assert "[FIRING] Queue too long" in receiver.requests[0]["json"]["text"]
    # oscillating between the clear threshold (5) and the threshold (10): silence
    for i, length in enumerate([7, 12, 6, 30, 9, 11, 6]):
        set_queue(redis_client, length)
        ev.evaluate_once(t + 40 + i * 10)
    assert len(receiver.requests) == 1
    set_queue(redis_client, 3)
    ev.evaluate_once(t + 120)
    assert len(receiver.requests) == 2
    assert "[RESOLVED] Queue too long" in receiver.requests[1]["json"]["text"]
    for i, length in enumerate([7, 9, 4, 8]):  # back in the band from below: still nothing
        set_queue(redis_client, length)
        ev.evaluate_once(t + 130 + i * 10)
    assert len(receiver.requests) == 2
    states = [(h["from_state"], h["to_state"]) for h in history(repo, "state")]
    assert states == [
        ("normal", "pending"),
        ("pending", "firing"),
        ("firing", "recovering"),
        ("recovering", "normal"),
    ] or states == [("normal", "pending"), ("pending", "firing"), ("firing", "normal")]


def test_each_channel_gets_its_real_payload(pg_repo, evaluators, redis_client, receiver, smtp):
    svc = service(pg_repo)
    channels = [
        slack(svc, receiver),
        svc.create_channel(
            {
                "name": "pd",
                "kind": "pagerduty",
                "config": {
                    "routing_key": "R0UTINGKEY0123456789abcdef",
                    "url": receiver.url + "/pd",
                },
            }
        ),
        svc.create_channel(
            {"name": "am", "kind": "webhook", "config": {"url": receiver.url + "/am"}}
        ),
        email_channel(svc, smtp, to="oncall@example.com, ops@example.com"),
    ]
    rule = queue_rule(svc, channels, for_seconds=0, clear_threshold=None)
    ev = evaluators(pg_repo)
    t = time.time()
    set_queue(redis_client, 11)
    ev.evaluate_once(t)
    set_queue(redis_client, 0)
    ev.evaluate_once(t + 60)

    fired, resolved = receiver.bodies("/slack")
    assert set(fired) == {"text"}
    assert "[FIRING]" in fired["text"] and "queue_length" in fired["text"]
    assert "[RESOLVED]" in resolved["text"]

    trigger, resolve = receiver.bodies("/pd")
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UTINGKEY0123456789abcdef"
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] != ""
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "auditq"
    assert "Queue too long" in trigger["payload"]["summary"]

    firing, done = receiver.bodies("/am")
    assert firing["version"] == done["version"] == "4"
    assert (firing["status"], done["status"]) == ("firing", "resolved")
    assert firing["receiver"] == "am" and firing["groupKey"] == '{}:{alertname="Queue too long"}'
    (alert,) = firing["alerts"]
    assert alert["labels"]["alertname"] == "Queue too long"
    assert alert["labels"]["severity"] == "critical"
    assert alert["fingerprint"] == done["alerts"][0]["fingerprint"] == trigger["dedup_key"]
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert done["alerts"][0]["startsAt"] == alert["startsAt"]
    assert done["alerts"][0]["endsAt"] > alert["startsAt"]
    assert {"summary", "description"} <= set(alert["annotations"])

    assert smtp.subjects == ["[FIRING] Queue too long", "[RESOLVED] Queue too long"]
    assert smtp.envelopes[0] == ("auditq@example.com", ["oncall@example.com", "ops@example.com"])
    assert "queue_length = 11" in smtp.messages[0].get_content()
    assert all(h["status"] == "sent" for h in history(pg_repo))
    assert {o["rule_id"] for o in outbox(pg_repo)} == {rule["id"]}


def test_503_twice_then_200_is_delivered_once_after_three_attempts(
    pg_repo, evaluators, redis_client, receiver
):
    svc = service(pg_repo)
    queue_rule(svc, [slack(svc, receiver)], for_seconds=0)
    receiver.script(503, 503, 200)
    ev = evaluators(pg_repo)
    t = time.time()
    set_queue(redis_client, 50)
    for dt in range(0, 20):
        ev.evaluate_once(t + dt)
    assert len(receiver.ok()) == 1
    assert [r["status"] for r in receiver.requests] == [503, 503, 200]
    (row,) = outbox(pg_repo)
    assert (row["status"], row["attempts"]) == ("sent", 3)
    assert [(h["status"], h["attempts"]) for h in history(pg_repo)] == [
        ("retrying", 1),
        ("retrying", 2),
        ("sent", 3),
    ]
    # the backoff doubled: attempts at t, t+2, t+2+4
    times = [h["happened_at"] - t for h in history(pg_repo)]
    assert times == pytest.approx([0, 2, 6], abs=0.01)


def test_retry_after_is_honoured(pg_repo, evaluators, redis_client, receiver):
    svc = service(pg_repo)
    queue_rule(svc, [slack(svc, receiver)], for_seconds=0)
    receiver.script(429, retry_after="120")
    ev = evaluators(pg_repo)
    t = time.time()
    set_queue(redis_client, 50)
    ev.evaluate_once(t)
    ev.evaluate_once(t + 119)
    assert [r["status"] for r in receiver.requests] == [429]
    ev.evaluate_once(t + 120)
    assert [r["status"] for r in receiver.requests] == [429, 200]


def test_a_400_is_not_retried_and_shows_in_history(pg_repo, evaluators, redis_client, receiver):
    svc = service(pg_repo)
    queue_rule(svc, [slack(svc, receiver)], for_seconds=0)
    receiver.script(400)
    ev = evaluators(pg_repo)
    t = time.time()
    set_queue(redis_client, 50)
    for dt in range(0, 600, 30):
        ev.evaluate_once(t + dt)
    assert len(receiver.requests) == 1
    (row,) = outbox(pg_repo)
    assert row["status"] == "failed" and "HTTP 400" in row["last_error"]
    (failure,) = history(pg_repo)
    assert (failure["status"], failure["channel_name"], failure["kind"]) == (
        "failed",
        "slack",
        "trigger",
    )
    assert "HTTP 400" in failure["detail"]
    assert [h["status"] for h in svc.history() if h["event"] == "delivery"] == ["failed"]


def test_unreachable_receivers_are_retried_until_they_answer(
    pg_repo, evaluators, redis_client, receiver
):
    svc = service(pg_repo)
    dead = svc.create_channel(
        {"name": "dead", "kind": "webhook", "config": {"url": "http://127.0.0.1:1/hook"}}
    )
    queue_rule(svc, [dead], for_seconds=0)
    ev = evaluators(pg_repo)
    t = time.time()
    set_queue(redis_client, 50)
    for dt in range(0, 200, 10):
        ev.evaluate_once(t + dt)
    (row,) = outbox(pg_repo)
    # AUDITQ_ALERT_MAX_ATTEMPTS=5 in these settings: then it gives up
    assert (row["status"], row["attempts"]) == ("failed", 5)
    assert "network error" in row["last_error"]
    svc.update_channel(dead["id"], {"config": {"url": receiver.url + "/hook"}})


def test_a_restarted_evaluator_neither_repeats_the_trigger_nor_loses_the_resolve(
    clean_db, evaluators, redis_client, receiver
):
    first_repo = PostgresRepo(clean_db)
    svc = service(first_repo)
    queue_rule(svc, [slack(svc, receiver)])
    t = time.time()
    set_queue(redis_client, 20)
    first = evaluators(first_repo)
    first.evaluate_once(t)  # pending
    first.close()  # the process stops (releasing the lease) while the alert is pending
    first_repo.close()

    second_repo = PostgresRepo(clean_db)
    second = evaluators(second_repo)
    second.evaluate_once(t + 30)  # the `for` timer kept running across the restart
    assert len(receiver.requests) == 1
    second.close()
    second_repo.close()

    third_repo = PostgresRepo(clean_db)
    third = evaluators(third_repo)
    for dt in (40, 50, 60):
        third.evaluate_once(t + dt)
    assert len(receiver.requests) == 1  # still firing: no second trigger
    set_queue(redis_client, 0)
    third.evaluate_once(t + 70)
    texts = [b["text"] for b in receiver.bodies()]
    assert len(texts) == 2 and "[FIRING]" in texts[0] and "[RESOLVED]" in texts[1]
    third_repo.close()


class FailingStateWrites:
    """A real repository whose next save of a rule's state fails, as if the evaluator died
    between writing the outbox and saving the state."""

    def __init__(self, repo):
        self.repo = repo

    def __getattr__(self, name):
        return getattr(self.repo, name)

    def upsert(self, table, row, on_conflict):
        if table == "alert_rule_state" and row["state"] == "firing":
            raise RuntimeError("evaluator died")
        return self.repo.upsert(table, row, on_conflict)


def test_dying_between_the_outbox_and_the_state_sends_once(
    pg_repo, evaluators, redis_client, receiver
):
    svc = service(pg_repo)
    queue_rule(svc, [slack(svc, receiver)], for_seconds=0)
    t = time.time()
    set_queue(redis_client, 20)
    crashing = evaluators(FailingStateWrites(pg_repo))
    with pytest.raises(RuntimeError):
        crashing.evaluate_once(t)
    crashing.close()
    assert len(outbox(pg_repo)) == 1 and receiver.requests == []
    restarted = evaluators(pg_repo)
    restarted.evaluate_once(t + 5)
    restarted.evaluate_once(t + 10)
    assert len(outbox(pg_repo)) == 1 and len(receiver.requests) == 1


def test_one_evaluator_at_a_time(pg_repo, evaluators):
    a, b = evaluators(pg_repo), evaluators(pg_repo)
    t = time.time()
    assert a.evaluate_once(t) is not None
    assert b.evaluate_once(t) is None
    assert a.evaluate_once(t + 1) is not None  # the holder renews
    a.close()
    assert b.evaluate_once(t + 2) is not None


def test_silences_stop_notifications_but_not_evaluation(
    pg_repo, evaluators, redis_client, receiver
):
    svc = service(pg_repo)
    rule = queue_rule(svc, [slack(svc, receiver)], for_seconds=0)
    t = time.time()
    silence = svc.create_silence(rule["id"], t - 1, t + 100, comment="deploy")
    ev = evaluators(pg_repo)
    set_queue(redis_client, 20)
    ev.evaluate_once(t)
    assert receiver.requests == []
    assert pg_repo.list("alert_rule_state")[0]["state"] == "firing"
    svc.end_silence(silence["id"], now=t + 10)
    ev.evaluate_once(t + 20)  # the silence is over and it still fires: the trigger goes out
    assert len(receiver.requests) == 1
    svc.create_silence(rule["id"], t + 25, t + 500, comment="again")
    set_queue(redis_client, 0)
    ev.evaluate_once(t + 30)  # the resolve of a delivered trigger passes the silence
    assert [("[RESOLVED]" in b["text"]) for b in receiver.bodies()] == [False, True]
    set_queue(redis_client, 20)
    ev.evaluate_once(t + 40)
    set_queue(redis_client, 0)
    ev.evaluate_once(t + 50)
    assert len(receiver.requests) == 2  # silenced from start to end: nothing at all


def test_repeat_interval(pg_repo, evaluators, redis_client, receiver):
    svc = service(pg_repo)
    queue_rule(svc, [slack(svc, receiver)], for_seconds=0, repeat_seconds=60)
    ev = evaluators(pg_repo)
    t = time.time()
    set_queue(redis_client, 20)
    for dt in range(0, 150, 10):
        ev.evaluate_once(t + dt)
    assert len(receiver.requests) == 3  # t, t+60, t+120


def test_a_rule_deleted_or_disabled_while_firing_still_resolves(
    pg_repo, evaluators, redis_client, receiver
):
    svc = service(pg_repo)
    channel = slack(svc, receiver)
    doomed = queue_rule(svc, [channel], for_seconds=0)
    paused = queue_rule(svc, [channel], for_seconds=0, name="Paused")
    ev = evaluators(pg_repo)
    t = time.time()
    set_queue(redis_client, 20)
    ev.evaluate_once(t)
    assert len(receiver.requests) == 2
    svc.delete_rule(doomed["id"])
    svc.update_rule(paused["id"], {"enabled": False})
    ev.evaluate_once(t + 10)
    resolved = sorted(b["text"] for b in receiver.bodies()[2:])
    assert len(resolved) == 2 and all("[RESOLVED]" in text for text in resolved)


def test_a_rule_without_channels_notifies_once_a_channel_is_added(
    pg_repo, evaluators, redis_client, receiver
):
    svc = service(pg_repo)
    rule = queue_rule(svc, [], for_seconds=0)
    ev = evaluators(pg_repo)
    t = time.time()
    set_queue(redis_client, 20)
    ev.evaluate_once(t)
    assert pg_repo.list("alert_rule_state")[0]["state"] == "firing"
    svc.update_rule(rule["id"], {"channel_ids": [slack(svc, receiver)["id"]]})
    ev.evaluate_once(t + 10)
    assert len(receiver.requests) == 1


def test_the_evaluator_seeds_the_default_rules(pg_repo, settings, redis_client):
    ev = Evaluator(settings, redis_client, pg_repo, seed=True)
    try:
        ev.evaluate_once()
    finally:
        ev.close()
    assert {r["seed_key"] for r in pg_repo.list("alert_rules")} == {
        "queue_length",
        "no_live_worker",
        "failed_batches",
        "drops",
        "redis_down",
        "verify_findings",
        "unsealed_age",
        "reconcile_gap",
        "admin_granted",
        "failed_logins",
        "ban_lifted",
    }


def test_a_new_process_for_every_run_still_sends_exactly_one_trigger_and_one_resolve(
    settings, pg_repo, redis_client, receiver
):
    def evaluate_once(settings, redis_client, repo, now):
        evaluator = Evaluator(settings, redis_client, repo)  # as a newly started process
        try:
            return evaluator.evaluate_once(now)
        finally:
            evaluator.close()

    svc = service(pg_repo)
    queue_rule(svc, [slack(svc, receiver)], for_seconds=20)
    t = time.time()
    set_queue(redis_client, 20)
    for dt in range(0, 60, 10):
        assert evaluate_once(settings, redis_client, pg_repo, now=t + dt) is not None
    set_queue(redis_client, 0)
    for dt in range(60, 90, 10):
        evaluate_once(settings, redis_client, pg_repo, now=t + dt)
    texts = [b["text"] for b in receiver.ok()]
    assert len(texts) == 2 and "[FIRING]" in texts[0] and "[RESOLVED]" in texts[1]
