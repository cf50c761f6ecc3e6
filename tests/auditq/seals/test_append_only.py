"""audit_logs and audit_seals refuse UPDATE, DELETE and TRUNCATE for every role: through the
data API with the service key, as service_role in SQL, and as the owner (a superuser with
triggers on). Only deliberately switching the triggers off gets past, which verify catches."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from auditq.seals.sealer import seal_pass
from auditq.stores.postgres import PostgresStore
from tests.auditq.seals.helpers import events

TABLES = ("audit_logs", "audit_seals")


@pytest.fixture
def sealed(clean_db, signer):
    store = PostgresStore(clean_db)
    batch = events(3)
    store.insert_events(batch)
    seal_pass(store, signer, grace=0)
    store.close()
    return batch


def counts(dsn):
    with psycopg.connect(dsn) as conn:
        return [conn.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES]


@pytest.mark.parametrize("table", TABLES)
def test_the_service_key_cannot_patch_or_delete_through_the_data_api(
    table, sealed, postgrest, clean_db
):
    headers = {"apikey": postgrest.service_key, "Authorization": f"Bearer {postgrest.service_key}"}
    url = f"{postgrest.url}/rest/v1/{table}"
    column, value = ("action", "x") if table == "audit_logs" else ("row_count", 99)
    every_row = {"id" if table == "audit_logs" else "seal_no": "not.is.null"}
    with httpx.Client(headers=headers, timeout=10) as http:
        patch = http.patch(url, params=every_row, json={column: value})
        delete = http.delete(url, params=every_row)
    assert patch.status_code in (401, 403) and delete.status_code in (401, 403)
    assert counts(clean_db) == [3, 1]


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(
    "statement", ["update {t} set {c} = {c}", "delete from {t}", "truncate {t}"]
)
@pytest.mark.parametrize("role", ["service_role", None])  # None: the owner (superuser)
def test_sql_changes_are_refused_for_every_role(table, statement, role, sealed, clean_db):
    column = "action" if table == "audit_logs" else "row_count"
    with psycopg.connect(clean_db, autocommit=True) as conn:
        if role:
            conn.execute(f"set role {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement.format(t=table, c=column))
    assert counts(clean_db) == [3, 1]


def test_the_service_role_cannot_choose_a_rows_txid(sealed, clean_db):
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("set role service_role")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "insert into audit_logs (id, occurred_at, action, txid)"
                " values (gen_random_uuid(), now(), 'x', '5'::xid8)"
            )
