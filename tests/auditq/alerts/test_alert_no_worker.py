"""When every worker process dies, the "no live worker" alert still goes out: the web
process's evaluator takes the lease over, fires the default rule, and resolves it once a
worker is back."""

import signal
import time

from auditq.alerts.evaluator import Evaluator
from auditq.alerts.metrics import collect
from tests.auditq.alerts.helpers import KEYS, alert_service
from tests.polling import wait_for


def test_killing_every_worker_delivers_the_no_live_worker_alert(
    worker_procs, redis_client, pg_repo, settings, receiver
):
    # Real `python -m worker` processes; each also runs the alert evaluator (lease: 1 s).
    for _ in range(2):
        worker_procs.start(alert_interval=0.2, alert_lease=1)
    wait_for(
        lambda: collect(redis_client, KEYS, settings.heartbeat_ttl)["workers_alive"] == 2,
        "two live workers",
    )
    # A worker's evaluator seeded the default rules on this new install.
    rule = wait_for(
        lambda: pg_repo.get("alert_rules", "no_live_worker", key="seed_key"), "default rules"
    )
    assert rule["channel_ids"] == []
    svc = alert_service(pg_repo, redis_client)
    channel = svc.create_channel(
        {"name": "oncall", "kind": "slack", "config": {"url": receiver.url + "/slack"}}
    )
    svc.update_rule(rule["id"], {"channel_ids": [channel["id"]]})

    for proc in worker_procs.procs:
        proc.send_signal(signal.SIGKILL)
    for proc in worker_procs.procs:
        proc.wait()

    web = Evaluator(settings, redis_client, pg_repo)  # what the web process runs
    try:
        # It gets the lease once the dead worker's lease has run out.
        wait_for(lambda: web.evaluate_once() is not None, "the lease to pass to the web process")
        t = time.time()
        web.evaluate_once(t + settings.heartbeat_ttl + 1)  # no beat within the TTL: pending
        assert collect(redis_client, KEYS, 5, t + 6)["workers_alive"] == 0
        assert receiver.requests == []
        web.evaluate_once(t + settings.heartbeat_ttl + 1 + 30)  # 30 s without a live worker
        (message,) = receiver.ok()
        assert "[FIRING] No live worker for 30 s" in message["text"]
        assert "workers_alive = 0" in message["text"]

        # A worker comes back (its evaluator waits: the web process holds the lease).
        worker_procs.start(alert_interval=0.2, alert_lease=1)
        wait_for(
            lambda: collect(redis_client, KEYS, settings.heartbeat_ttl)["workers_alive"] == 1,
            "a live worker again",
        )
        web.evaluate_once()  # the real time: the new worker's heartbeat counts
    finally:
        web.close()
    texts = [m["text"] for m in receiver.ok()]
    assert len(texts) == 2 and "[RESOLVED] No live worker for 30 s" in texts[1]
