"""The migrations: idempotent, recorded as the Supabase CLI does, and the table append-only."""

import httpx
import psycopg

from auditq.__main__ import main
from auditq.migrate import MIGRATIONS_DIR, apply_migrations


def test_applying_twice_changes_nothing(pg_dsn):
    assert apply_migrations(pg_dsn) == []
    with psycopg.connect(pg_dsn) as conn:
        versions = [
            r[0]
            for r in conn.execute(
                "select version from supabase_migrations.schema_migrations order by version"
            )
        ]
    assert versions == sorted(p.name.split("_")[0] for p in MIGRATIONS_DIR.glob("*.sql"))


def test_the_cli_reads_database_url(pg_dsn, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    assert main(["migrate"]) == 0
    assert "applied 0 migration(s)" in capsys.readouterr().out


def test_the_cli_explains_a_missing_database_url(monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["migrate"]) == 2
    assert "DATABASE_URL" in capsys.readouterr().err


def test_rls_is_on(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute(
            "select relrowsecurity from pg_class where oid = 'public.audit_logs'::regclass"
        ).fetchone() == (True,)


def _rest(postgrest, key):
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return httpx.Client(base_url=f"{postgrest.url}/rest/v1", headers=headers, timeout=10)


ROW = {
    "id": "0190b2a4-0000-7000-8000-000000000001",
    "occurred_at": "2026-01-01T00:00:00Z",
    "action": "probe",
}


def test_the_service_role_can_insert_but_not_update_or_delete(postgrest, pg_dsn, clean_db):
    with _rest(postgrest, postgrest.service_key) as rest:
        assert rest.post("/audit_logs", json=ROW).status_code == 201
        update = rest.patch("/audit_logs", params={"id": f"eq.{ROW['id']}"}, json={"action": "x"})
        delete = rest.delete("/audit_logs", params={"id": f"eq.{ROW['id']}"})
        assert update.status_code in (401, 403) and delete.status_code in (401, 403)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("select action from public.audit_logs").fetchall() == [("probe",)]


def test_the_trigger_refuses_changes_even_with_grants(pg_dsn, clean_db):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "insert into public.audit_logs (id, occurred_at, action) values (%s, now(), 'x')",
            (ROW["id"],),
        )
        conn.commit()
        for statement in (
            "update public.audit_logs set action = 'y'",
            "delete from public.audit_logs",
            "truncate public.audit_logs",
        ):
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege as error:
                assert "append-only" in str(error)
                conn.rollback()
            else:
                raise AssertionError(f"{statement!r} was allowed")


def test_the_anon_key_reads_nothing_and_cannot_insert(postgrest, pg_dsn, clean_db):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "insert into public.audit_logs (id, occurred_at, action) values (%s, now(), 'x')",
            (ROW["id"],),
        )
    with _rest(postgrest, postgrest.anon_key) as rest:
        read = rest.get("/audit_logs")
        assert read.status_code in (401, 403) or read.json() == []
        assert rest.post("/audit_logs", json=ROW | {"id": ROW["id"][:-1] + "2"}).status_code in (
            401,
            403,
        )
