"""tests/services.py: supabase-py through the gateway to a real PostgREST, and "Supabase down"."""

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

from tests.services import LocalSupabase

TABLE = "harness_probe"


@pytest.fixture
def probe(postgrest: LocalSupabase, pg_dsn: str) -> Iterator[Client]:
    """A supabase-py client (service key) and a throwaway table it may use."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"create table public.{TABLE} (id int primary key, note text)")
        # Like Supabase, the local roles get default grants on new tables; take anon's back.
        conn.execute(f"revoke all on public.{TABLE} from anon, authenticated")
    postgrest.reload_schema()
    try:
        yield client(postgrest, postgrest.service_key)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"drop table public.{TABLE}")
        postgrest.reload_schema()


def client(postgrest: LocalSupabase, key: str) -> Client:
    # A short timeout turns a hang into a failure; it goes on the httpx client because
    # supabase-py deprecates its own timeout option.
    options = ClientOptions(
        httpx_client=httpx.Client(timeout=5), auto_refresh_token=False, persist_session=False
    )
    return create_client(postgrest.url, key, options)


def test_supabase_py_works_through_the_gateway(probe: Client) -> None:
    table = probe.table(TABLE)
    table.insert([{"id": 1, "note": "a"}, {"id": 2, "note": "b"}]).execute()
    table.upsert(
        [{"id": 2, "note": "dup"}, {"id": 3, "note": "c"}],
        on_conflict="id",
        ignore_duplicates=True,
        returning="minimal",
    ).execute()
    table.update({"note": "B"}).eq("id", 2).execute()  # PATCH
    table.delete().eq("id", 1).execute()

    # Prefer: count=exact comes back as Content-Range; .range() sends a limit and offset.
    page = table.select("*", count="exact").order("id").range(0, 0).execute()
    assert (page.count, page.data) == (2, [{"id": 2, "note": "B"}])
    assert table.select("*", count="exact", head=True).execute().count == 2  # HEAD


def test_the_anon_key_gets_the_anon_role(postgrest: LocalSupabase, probe: Client) -> None:
    with pytest.raises(APIError) as refused:
        client(postgrest, postgrest.anon_key).table(TABLE).select("*").execute()
    assert refused.value.code == "42501"  # permission denied: the probe table revokes anon


def test_only_rest_v1_is_served(postgrest: LocalSupabase) -> None:
    assert httpx.get(f"{postgrest.url}/auth/v1/health", timeout=5).status_code == 404


def test_with_postgrest_stopped_the_gateway_answers_502(
    postgrest: LocalSupabase, probe: Client
) -> None:
    headers = {"apikey": postgrest.service_key, "Authorization": f"Bearer {postgrest.service_key}"}
    postgrest.server.stop()
    try:
        # The timeout is the bound: a hanging gateway fails here instead of answering.
        down = httpx.get(f"{postgrest.url}/rest/v1/{TABLE}", headers=headers, timeout=5)
        assert down.status_code == 502
        with pytest.raises(APIError):
            probe.table(TABLE).select("*").execute()
    finally:
        postgrest.server.start()
    assert probe.table(TABLE).select("*").execute().data == []
