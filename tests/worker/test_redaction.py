"""No redacted secret reaches Redis or the database on any path (issue 15, item 1).

Events carrying secrets enter every way there is: the Python client (normal, and critical
written directly), a producer in another language (raw entries through the Lua script,
one of them invalid so the worker dead-letters it), and the worker stores them. Then
everything Redis and the database hold is dumped and searched for the secrets.
"""

from __future__ import annotations

import json

import psycopg

from auditq.client import AuditClient
from auditq.config import load_settings
from tests.dumps import dump_database, dump_redis
from tests.polling import wait_for
from tests.worker.helpers import KEYS, drained, enqueue

SECRETS = ["pw-client-normal", "tok-client-critical", "auth-raw-producer", "pw-dead-letter",
           "cvv-not-json"]  # fmt: skip


def test_no_secret_reaches_redis_or_the_database(redis_url, redis_client, queue, workers, clean_db):
    client = AuditClient(
        load_settings(redis_url=redis_url, store="postgres", database_url=clean_db)
    )
    assert client.log("user.login", metadata={"password": SECRETS[0]}).outcome == "queued"
    critical = client.log(
        "user.ban", category="critical", metadata={"nested": [{"Token": SECRETS[1]}]}
    )
    assert critical.outcome == "written"
    enqueue(
        queue,
        [
            json.dumps({"action": "node.login", "metadata": {"Authorization": SECRETS[2]}}),
            json.dumps(
                {"action": "node.bad", "ip": "999.1.1.1", "metadata": {"passwd": SECRETS[3]}}
            ),
            '{"action": "node.broken", "metadata": {"cvv": "' + SECRETS[4] + '"',
        ],
    )
    workers.start()
    wait_for(lambda: drained(redis_client), "the worker to drain the stream", 60, workers.logs)
    wait_for(lambda: redis_client.xlen(KEYS.dead) == 2, "two dead letters", 30, workers.logs)

    stored = dump_database(clean_db)
    held = dump_redis(redis_client)
    logged = (workers.tmp_path / "worker-0.log").read_text(errors="replace")
    assert "node.bad" in held  # the dead letters are in the dump, redacted
    for secret in SECRETS:
        assert secret not in stored
        assert secret not in held
        assert secret not in logged
    # What was redacted is still recorded as having been there.
    with psycopg.connect(clean_db) as conn:
        rows = dict(conn.execute("select action, metadata from public.audit_logs").fetchall())
    assert rows["user.login"] == {"password": "[redacted]"}
    assert rows["user.ban"] == {"nested": [{"Token": "[redacted]"}]}
    assert rows["node.login"] == {"Authorization": "[redacted]"}
    client.close()
