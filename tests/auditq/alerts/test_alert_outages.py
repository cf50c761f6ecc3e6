"""Alerts work during the outages they exist for (issue 10, item 2): the store (the data
API) down, Redis down, both down. Real servers are stopped and started; the evaluators are
in-process (the clock driven by the test) or real worker processes; a real HTTP receiver
records what was sent."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from auditq.alerts.evaluator import Evaluator
from auditq.alerts.metrics import collect
from auditq.alerts.repo import SupabaseRepo
from auditq.queue import Queue, connect
from auditq.stores.supabase import SupabaseStore
from tests.auditq.alerts.helpers import KEYS, alert_service, set_queue
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
def sb_repo(clean_db, postgrest):
    opened = SupabaseRepo(SupabaseStore(postgrest.url, postgrest.service_key, timeout=5).client)
    yield opened
    opened.close()
    postgrest.server.start()  # a test that stopped it may have failed half-way


def sent(receiver, rule_name: str) -> list[str]:
    """Statuses ("firing", "resolved") the webhook receiver accepted for one rule."""
    return [
        body["status"]
        for body in receiver.ok()
        if body["alerts"][0]["labels"]["alertname"] == rule_name
    ]


def evaluated_since(client: redis.Redis, since: float) -> bool:
    """The leading evaluator has finished a run that started after ``since``."""
    raw = client.get(KEYS.alerts_status)
    return bool(raw) and json.loads(raw)["at"] > since


def fired_and_resolved_once(receiver, rule_name: str, client: redis.Redis, procs) -> None:
    """The alert resolves after the outage; later runs (of any process) send nothing more."""
    wait_for(
        lambda: sent(receiver, rule_name) == ["firing", "resolved"],
        f"{rule_name!r} to resolve after the outage",
        60,
        procs.logs,
    )
    resolved_at = time.time()
    wait_for(lambda: evaluated_since(client, resolved_at + 1), "more evaluations", 60)
    assert sent(receiver, rule_name) == ["firing", "resolved"]  # once, not once per process


def webhook(svc, receiver):
    return svc.create_channel(
        {"name": "oncall", "kind": "webhook", "config": {"url": receiver.url + "/hook"}}
    )


def queue_rule(svc, channel):
    return svc.create_rule(
        {
            "name": "Queue too long",
            "metric": "queue_length",
            "op": ">",
            "threshold": 10,
            "clear_threshold": 5,
            "channel_ids": [channel["id"]],
        }
    )


# --- in-process evaluators, the clock driven by the test ---------------------------------------


def test_with_the_store_down_the_evaluator_fires_and_resolves_and_writes_back_once(
    sb_repo, postgrest, evaluators, redis_client, receiver
):
    svc = alert_service(sb_repo)
    queue_rule(svc, webhook(svc, receiver))
    ev = evaluators(sb_repo)
    t = time.time()
    assert ev.evaluate_once(t) is not None  # reads the rules while the store answers
    postgrest.server.stop()
    set_queue(redis_client, 20)
    report = ev.evaluate_once(t + 5)
    assert report is not None and not report.store_up
    assert sent(receiver, "Queue too long") == ["firing"]
    set_queue(redis_client, 0)
    ev.evaluate_once(t + 10)
    assert sent(receiver, "Queue too long") == ["firing", "resolved"]
    postgrest.server.start()

    ev.evaluate_once(t + 15)  # writes back what the store missed
    ev.evaluate_once(t + 20)
    assert sent(receiver, "Queue too long") == ["firing", "resolved"]  # nothing sent twice
    outbox = sb_repo.list("alert_outbox", order="created_at")
    assert [(row["kind"], row["status"]) for row in outbox] == [
        ("trigger", "sent"),
        ("resolve", "sent"),
    ]
    history = sb_repo.list("alert_history", order="happened_at")
    assert [(h["event"], h["to_state"] or h["status"]) for h in history] == [
        ("state", "firing"),
        ("delivery", "sent"),
        ("state", "normal"),
        ("delivery", "sent"),
    ]
    (state,) = sb_repo.list("alert_rule_state")
    assert state["state"] == "normal" and state["episode"] == 1


def test_a_process_started_while_the_store_is_down_knows_the_rules_from_redis(
    sb_repo, postgrest, evaluators, redis_client, receiver
):
    svc = alert_service(sb_repo)
    queue_rule(svc, webhook(svc, receiver))
    first = evaluators(sb_repo)
    t = time.time()
    first.evaluate_once(t)
    first.close()
    postgrest.server.stop()
    restarted = evaluators(sb_repo)  # a new process: nothing in memory
    set_queue(redis_client, 20)
    assert restarted.evaluate_once(t + 5) is not None
    assert sent(receiver, "Queue too long") == ["firing"]
    postgrest.server.start()
    restarted.evaluate_once(t + 10)
    assert [row["status"] for row in sb_repo.list("alert_outbox")] == ["sent"]
    assert sent(receiver, "Queue too long") == ["firing"]


def test_the_redis_copy_comes_back_after_redis_lost_it(sb_repo, evaluators, redis_client, receiver):
    svc = alert_service(sb_repo)
    queue_rule(svc, webhook(svc, receiver))
    ev = evaluators(sb_repo)
    t = time.time()
    ev.evaluate_once(t)
    redis_client.flushdb()  # as a Redis restarted without persistence
    ev.evaluate_once(t + 5)  # nothing changed, and still:
    assert b"Queue too long" in redis_client.get(KEYS.alerts_config)
    assert redis_client.hlen(KEYS.alerts_states) == 1


def test_a_leader_change_during_a_store_outage_still_notifies_once(
    sb_repo, postgrest, evaluators, redis_client, receiver
):
    svc = alert_service(sb_repo)
    queue_rule(svc, webhook(svc, receiver))
    a, b = evaluators(sb_repo), evaluators(sb_repo)
    t = time.time()
    a.evaluate_once(t)
    postgrest.server.stop()
    set_queue(redis_client, 20)
    a.evaluate_once(t + 5)  # fires; the store has not seen it
    a.leader.release()  # a loses the lead (as when its lease ran out) ...
    set_queue(redis_client, 0)
    assert b.evaluate_once(t + 10) is not None  # ... b resumes from the Redis copy, resolves
    assert sent(receiver, "Queue too long") == ["firing", "resolved"]
    postgrest.server.start()
    b.leader.release()
    assert a.evaluate_once(t + 15) is not None  # a leads again: b's newer state wins
    a.evaluate_once(t + 20)
    assert sent(receiver, "Queue too long") == ["firing", "resolved"]
    (state,) = sb_repo.list("alert_rule_state")
    assert state["state"] == "normal"


def test_without_redis_one_evaluator_leads_through_the_lease_in_the_store(pg_repo, settings):
    dead = connect("redis://127.0.0.1:1/0", timeout=0.2)  # a Redis nobody can reach
    a = Evaluator(settings, dead, pg_repo)
    b = Evaluator(settings, dead, pg_repo)
    try:
        report = a.evaluate_once()
        assert report is not None and report.metrics["redis_up"] == 0
        assert b.evaluate_once() is None
        a.close()  # a clean exit hands the lease over at once
        assert b.evaluate_once() is not None
    finally:
        a.close()
        b.close()


def test_with_redis_and_the_store_down_only_the_last_leader_goes_on(
    sb_repo, postgrest, redis_server, settings, redis_client
):
    a = Evaluator(settings, redis_client, sb_repo)
    b = Evaluator(settings, redis_client, sb_repo)
    try:
        assert a.evaluate_once() is not None
        assert b.evaluate_once() is None
        redis_server.stop()
        postgrest.server.stop()
        assert a.evaluate_once() is not None  # nobody could take over: it carries on
        assert b.evaluate_once() is None  # and nobody else starts
    finally:
        redis_server.start()
        postgrest.server.start()
        a.close()
        b.close()


# --- real worker processes ----------------------------------------------------------------------


def test_a_data_api_outage_is_alerted_during_it_and_resolved_after_it_once(
    worker_procs, postgrest, sb_repo, redis_client, receiver, clean_db
):
    svc = alert_service(sb_repo)
    channel = webhook(svc, receiver)
    for name, metric, threshold, clear in (
        ("Lag over 3 s", "lag_seconds", 3, 1),
        ("Failed batches", "failed_batches_per_minute", 0, None),
    ):
        svc.create_rule(
            {
                "name": name,
                "metric": metric,
                "op": ">",
                "threshold": threshold,
                "clear_threshold": clear,
                "channel_ids": [channel["id"]],
            }
        )
    for _ in range(2):  # each also runs the evaluator; one leads
        worker_procs.start(
            supabase=postgrest, alert_interval=0.3, alert_lease=3, alert_allow_private=True
        )
    wait_for(
        lambda: b"Failed batches" in (redis_client.get(KEYS.alerts_config) or b""),
        "an evaluator to have read the rules",
        60,
        worker_procs.logs,
    )

    queue = Queue(redis_client, KEYS, 100_000)
    payloads = make_events(4_000)
    entry_ids: list[str] = []
    stop = threading.Event()

    def produce():  # events flow before and during the outage
        for i in range(0, len(payloads), 50):
            if stop.is_set():
                return
            entry_ids.extend(enqueue(queue, payloads[i : i + 50]))
            time.sleep(0.1)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_for(lambda: row_count(clean_db) > 0, "the first rows", 60, worker_procs.logs)
        postgrest.server.stop()
        wait_for(
            lambda: sent(receiver, "Lag over 3 s") and sent(receiver, "Failed batches"),
            "both alerts to fire during the outage",
            60,
            worker_procs.logs,
        )
        assert not postgrest.server.running  # still down: they fired DURING the outage
    finally:
        stop.set()
        producer.join()
        postgrest.server.start()

    wait_for(lambda: drained(redis_client), "the backlog to drain", 120, worker_procs.logs)
    fired_and_resolved_once(receiver, "Lag over 3 s", redis_client, worker_procs)
    assert sent(receiver, "Failed batches") == ["firing"]  # once, not once per process
    sent_payloads = payloads[: len(entry_ids)]  # the producer stopped with the outage
    assert_exactly_once(clean_db, expected_ids(entry_ids, sent_payloads))
    # What was sent from memory reached the store afterwards, once, marked sent.
    wait_for(
        lambda: (
            [r["status"] for r in sb_repo.list("alert_outbox") if r["kind"] != "trigger"]
            == ["sent"]
        ),
        "the held notifications to be written back",
        60,
        worker_procs.logs,
    )
    assert sorted(r["status"] for r in sb_repo.list("alert_outbox")) == ["sent"] * 3


def test_a_redis_outage_is_alerted_during_it_and_resolved_after_it_once(
    worker_procs, redis_server, redis_client, pg_repo, receiver
):
    for _ in range(2):
        worker_procs.start(alert_interval=0.3, alert_lease=3, alert_allow_private=True)
    rule = wait_for(
        lambda: pg_repo.get("alert_rules", "redis_down", key="seed_key"),
        "the default rules",
        60,
        worker_procs.logs,
    )
    assert rule["name"] == "Redis unreachable" and rule["channel_ids"] == []
    svc = alert_service(pg_repo)
    channel = webhook(svc, receiver)
    svc.update_rule(rule["id"], {"channel_ids": [channel["id"]], "for_seconds": 2})
    wait_for(
        lambda: collect(redis_client, KEYS, 5)["workers_alive"] == 2,
        "both workers to run",
        60,
        worker_procs.logs,
    )

    redis_server.stop()
    try:
        wait_for(
            lambda: sent(receiver, "Redis unreachable"),
            "the alert to fire during the outage",
            60,
            worker_procs.logs,
        )
        with pytest.raises(redis.ConnectionError):
            redis_client.ping()  # still down: it fired DURING the outage
    finally:
        redis_server.start()
    fired_and_resolved_once(receiver, "Redis unreachable", redis_client, worker_procs)
    assert all(proc.poll() is None for proc in worker_procs.procs)
