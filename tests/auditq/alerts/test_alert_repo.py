"""One contract, both stores: the alert repository over psycopg and over supabase-py."""

import psycopg
import pytest

from auditq.alerts.defaults import DEFAULT_RULES, seed_defaults
from auditq.alerts.repo import Conflict, new_id

T0 = 1_800_000_000.0


def channel(name="ops", **kw):
    config = {"url": "https://hooks.slack.com/services/x"}
    return {"id": new_id(), "name": name, "kind": "slack", "config": config, "created_at": T0} | kw


def test_insert_get_list_update_delete(repo):
    row = repo.insert("alert_channels", channel())
    assert row["name"] == "ops" and row["config"] == {"url": "https://hooks.slack.com/services/x"}
    assert row["created_at"] == T0 and row["enabled"] is True
    assert isinstance(row["id"], str)
    assert repo.get("alert_channels", row["id"]) == row
    changed = repo.update("alert_channels", row["id"], {"name": "pager", "updated_at": T0 + 1.5})
    assert changed["name"] == "pager" and changed["updated_at"] == T0 + 1.5
    assert [r["id"] for r in repo.list("alert_channels")] == [row["id"]]
    assert repo.delete("alert_channels", row["id"]) is True
    assert repo.get("alert_channels", row["id"]) is None
    assert repo.delete("alert_channels", row["id"]) is False
    assert repo.update("alert_channels", row["id"], {"name": "x"}) is None


def test_filters_order_and_limit(repo):
    for i in range(5):
        repo.insert(
            "alert_history",
            {
                "happened_at": T0 + i,
                "event": "state",
                "value": i,
                "rule_name": "r" if i % 2 else None,
            },
        )
    rows = repo.list(
        "alert_history", [("happened_at", "gte", T0 + 1)], order="happened_at", desc=True, limit=3
    )
    assert [r["value"] for r in rows] == [4, 3, 2]
    assert len(repo.list("alert_history", [("rule_name", "eq", None)])) == 3
    assert len(repo.list("alert_history", [("rule_name", "neq", None)])) == 2
    assert [
        r["value"] for r in repo.list("alert_history", [("value", "in", [1, 4])], order="value")
    ] == [1, 4]
    assert repo.delete_where("alert_history", [("happened_at", "lt", T0 + 2)]) == 2
    assert len(repo.list("alert_history")) == 3


def test_unique_names_are_a_conflict(repo):
    repo.insert("alert_channels", channel())
    with pytest.raises(Conflict):
        repo.insert("alert_channels", channel())


def test_insert_ignore_and_upsert(repo):
    rule = repo.insert(
        "alert_rules",
        {"name": "r", "metric": "queue_length", "op": ">", "threshold": 1, "channel_ids": []},
    )
    outbox = {
        "key": "k1",
        "rule_id": rule["id"],
        "kind": "trigger",
        "message": {"a": [1]},
        "next_attempt_at": T0,
        "created_at": T0,
    }
    assert repo.insert_ignore("alert_outbox", [outbox], "key") == 1
    assert repo.insert_ignore("alert_outbox", [outbox, {**outbox, "key": "k2"}], "key") == 1
    state = {"rule_id": rule["id"], "state": "pending", "pending_at": T0, "episode": 0}
    repo.upsert("alert_rule_state", state, "rule_id")
    repo.upsert("alert_rule_state", {**state, "state": "firing", "episode": 1}, "rule_id")
    (saved,) = repo.list("alert_rule_state")
    assert (saved["state"], saved["episode"], saved["pending_at"]) == ("firing", 1, T0)


def test_seeding_the_defaults_happens_once(repo):
    assert seed_defaults(repo) == len(DEFAULT_RULES)
    first = repo.list("alert_rules", [("seed_key", "eq", "queue_length")])
    repo.delete("alert_rules", first[0]["id"])
    assert seed_defaults(repo) == 0  # a deleted default stays deleted
    assert len(repo.list("alert_rules")) == len(DEFAULT_RULES) - 1
    names = {r["name"] for r in repo.list("alert_rules")}
    assert "No live worker for 30 s" in names
    assert all(r["channel_ids"] == [] for r in repo.list("alert_rules"))


def test_the_api_roles_see_nothing_and_rls_is_on(clean_db):
    tables = [
        "alert_channels",
        "alert_rules",
        "alert_rule_state",
        "alert_silences",
        "alert_outbox",
        "alert_history",
        "alert_meta",
    ]
    with psycopg.connect(clean_db) as conn:
        rls = conn.execute(
            "select relname, relrowsecurity from pg_class where relname = any(%s)", (tables,)
        ).fetchall()
        assert sorted(rls) == sorted((t, True) for t in tables)
        for role in ("anon", "authenticated"):
            for table in tables:
                assert conn.execute(
                    "select has_table_privilege(%s, %s, 'select')", (role, f"public.{table}")
                ).fetchone() == (False,)
        assert conn.execute(
            "select has_table_privilege('service_role', 'public.alert_rules', 'update')"
        ).fetchone() == (True,)
