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

-- One refusal for every append-only table, naming the table.
create or replace function public.auditq_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception '% is append-only: % refused', tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

drop trigger if exists audit_seals_append_only on public.audit_seals;
create trigger audit_seals_append_only
    before update or delete on public.audit_seals
    for each row execute function public.auditq_refuse_change();

drop trigger if exists audit_seals_no_truncate on public.audit_seals;
create trigger audit_seals_no_truncate
    before truncate on public.audit_seals
    for each statement execute function public.auditq_refuse_change();

-- audit_logs already refuses UPDATE/DELETE (row trigger) and TRUNCATE (statement trigger) for
-- every role, its owner included (20261127000000_audit_logs.sql); nothing to add there.

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

-- What the sealer needs of each row, hashed in the database (C speed, 48 bytes a row over
-- the wire): rows with from_txid <= txid < to_txid in (txid, id) order, after a keyset.
-- leaf = the uuid's 16 bytes || sha256('auditq/row/v1' || NUL || canonical text as UTF-8);
-- settled: stored at or before stored_before (AUDITQ_SEAL_GRACE ago).
create or replace function public.audit_seal_leaves(
    from_txid text, to_txid text, stored_before timestamptz,
    after_txid text default null, after_id uuid default null, max_rows integer default 2000
) returns table (txid text, leaf bytea, settled boolean)
language sql stable as $$
    select l.txid::text,
           uuid_send(l.id) || sha256(decode('6175646974712f726f772f763100', 'hex')
                                     || convert_to(public.audit_row_canonical(l), 'UTF8')),
           l.received_at <= stored_before
    from public.audit_logs l
    where l.txid >= from_txid::xid8 and l.txid < to_txid::xid8
      and (after_txid is null or (l.txid, l.id) > (after_txid::xid8, after_id))
    order by l.txid, l.id
    limit max_rows;
$$;
revoke all on function public.audit_row_canonical(public.audit_logs) from public, anon, authenticated;
revoke all on function public.audit_seal_leaves(text, text, timestamptz, text, uuid, integer)
    from public, anon, authenticated;
grant execute on function public.audit_row_canonical(public.audit_logs) to service_role;
grant execute on function public.audit_seal_leaves(text, text, timestamptz, text, uuid, integer) to service_role;
