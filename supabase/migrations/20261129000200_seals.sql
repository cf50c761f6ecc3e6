-- Tamper-evident seals over audit_logs (auditq/seals). See auditq/seals/__init__.py for the design.

-- Where a row falls in commit order: the id of the transaction that inserted it. Every row of a
-- transaction with txid < pg_snapshot_xmin(pg_current_snapshot()) is committed (or gone for
-- good), so a seal over [from_txid, to_txid) with to_txid <= that horizon covers a final set
-- of rows, however concurrently and out of order the workers committed. A row whose
-- transaction was still open gets a txid >= the horizon and lands in a later seal.
-- Existing rows all take the migration's own transaction id (one final group).
alter table public.audit_logs
    add column if not exists txid xid8 not null default pg_current_xact_id();
create index if not exists audit_logs_txid_idx on public.audit_logs (txid, id);

-- No inserter may choose its own position (a forged old txid would slip into a sealed
-- range): the service role may insert every column but txid, which always takes the default.
revoke insert on table public.audit_logs from service_role;
grant insert (id, occurred_at, received_at, action, category, actor_type, actor_id,
              target_type, target_id, tenant_id, outcome, ip, user_agent, request_id,
              metadata, ingest_path)
    on table public.audit_logs to service_role;

-- One row per seal: a chain (seal_no, prev_hash) that two sealers cannot fork (the primary
-- key and the unique prev_hash let exactly one of two competing seals in), written in one
-- INSERT (a sealer killed mid-pass leaves no half seal).
create table if not exists public.audit_seals (
    seal_no    bigint primary key check (seal_no >= 1),
    prev_hash  bytea not null unique check (octet_length(prev_hash) = 32),
    from_txid  xid8 not null,
    to_txid    xid8 not null check (to_txid > from_txid),
    row_count  bigint not null check (row_count >= 1),
    total_rows bigint not null check (total_rows >= row_count),  -- rows sealed up to this seal
    -- 48 bytes per row, in (txid, id) order: the row's uuid then the sha256 of its canonical form.
    leaves     bytea not null,
    root       bytea not null check (octet_length(root) = 32),
    sealed_at  timestamptz not null,
    public_key bytea not null check (octet_length(public_key) = 32),
    hash       bytea not null unique check (octet_length(hash) = 32),
    signature  bytea not null check (octet_length(signature) = 64)
);
-- The ranges tile the txid line: each seal starts where the previous one ended.
create unique index if not exists audit_seals_from_txid_key on public.audit_seals (from_txid);

alter table public.audit_seals enable row level security;
revoke all on table public.audit_seals from anon, authenticated, service_role;
grant select, insert on table public.audit_seals to service_role;

-- One refusal for every append-only table, naming the table; audit_logs' triggers move to it
-- (same message as before) and its own copy goes.
create or replace function public.auditq_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception '% is append-only: % refused', tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

do $$
declare
    t text;
begin
    foreach t in array array['audit_logs', 'audit_seals'] loop
        execute format('drop trigger if exists %I on public.%I', t || '_append_only', t);
        execute format('create trigger %I before update or delete on public.%I'
                       ' for each row execute function public.auditq_refuse_change()',
                       t || '_append_only', t);
        execute format('drop trigger if exists %I on public.%I', t || '_no_truncate', t);
        execute format('create trigger %I before truncate on public.%I'
                       ' for each statement execute function public.auditq_refuse_change()',
                       t || '_no_truncate', t);
    end loop;
end;
$$;
drop function if exists public.audit_logs_refuse_change();

-- The sealer's horizon, callable through PostgREST (rpc) by a worker that has only the
-- service key: every transaction with a txid below xmin has ended. Also the database's clock,
-- so AUDITQ_SEAL_GRACE is measured against the same clock that set received_at.
create or replace function public.audit_seal_horizon()
returns table (xmin text, db_now timestamptz)
language sql stable as $$
    select pg_snapshot_xmin(pg_current_snapshot())::text, now();
$$;
revoke all on function public.audit_seal_horizon() from public, anon, authenticated;
grant execute on function public.audit_seal_horizon() to service_role;

-- The canonical form of a row (format v1, documented in auditq/seals/canonical.py and the
-- README): the text of a JSON array of its columns, as jsonb prints it. verify rebuilds the
-- same text on its own from the columns it reads.
create or replace function public.audit_row_canonical(r public.audit_logs) returns text
language sql stable as $$
    select jsonb_build_array(
        r.id::text,
        to_char(r.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        to_char(r.received_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        r.action, r.category, r.outcome, r.actor_type, r.actor_id, r.target_type,
        r.target_id, r.tenant_id, abbrev(r.ip), r.user_agent, r.request_id, r.ingest_path,
        r.metadata,
        r.txid::text
    )::text;
$$;

-- The next seal's content, computed in the database (C speed; one round trip and 48 bytes a
-- row over the wire): it starts at from_txid and ends (exclusive) at the first of
--   horizon;
--   the transaction after the one holding its max_rows-th row (a seal ends only between
--   transactions);
--   the first transaction with a row stored after stored_before (AUDITQ_SEAL_GRACE).
-- leaves = for each row in (txid, id) order: the uuid's 16 bytes ||
--          sha256('auditq/row/v1' || NUL || canonical text as UTF-8).
create or replace function public.audit_seal_next(
    from_txid text, horizon text, stored_before timestamptz, max_rows integer
) returns table (to_txid text, row_count bigint, leaves bytea)
language plpgsql stable as $$
declare
    lo xid8 := from_txid::xid8;
    hi xid8 := horizon::xid8;
    last_in xid8;
    unsettled xid8;
begin
    select l.txid into last_in from public.audit_logs l
     where l.txid >= lo and l.txid < hi
     order by l.txid, l.id offset greatest(max_rows, 1) - 1 limit 1;
    if last_in is not null then
        hi := least(hi, (last_in::text::numeric + 1)::text::xid8);
    end if;
    select min(l.txid) into unsettled from public.audit_logs l
     where l.txid >= lo and l.txid < hi and l.received_at > stored_before;
    if unsettled is not null then
        hi := unsettled;
    end if;
    return query
        select hi::text, count(*),
               coalesce(string_agg(
                   uuid_send(l.id) || sha256(decode('6175646974712f726f772f763100', 'hex')
                                             || convert_to(public.audit_row_canonical(l), 'UTF8')),
                   ''::bytea order by l.txid, l.id), ''::bytea)
        from public.audit_logs l
        where l.txid >= lo and l.txid < hi;
end;
$$;
revoke all on function public.audit_row_canonical(public.audit_logs) from public, anon, authenticated;
revoke all on function public.audit_seal_next(text, text, timestamptz, integer)
    from public, anon, authenticated;
grant execute on function public.audit_row_canonical(public.audit_logs) to service_role;
grant execute on function public.audit_seal_next(text, text, timestamptz, integer) to service_role;
