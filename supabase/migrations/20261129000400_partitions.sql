-- Monthly partitions of audit_logs (auditq/retention): range-partitioned on occurred_at, one
-- partition per calendar month (UTC) named audit_logs_yYYYYmMM, plus audit_logs_default for
-- times outside every created month. Retention later archives and drops whole months; nothing
-- ever DELETEs or UPDATEs a row.
--
-- The unique key must hold the partition key, so it becomes (id, occurred_at). Inserts stay
-- idempotent because a redelivered event carries the same id and the same occurred_at (set by
-- the producer, or derived from the stream entry id in auditq.events.decode_entry).
--
-- Conversion of an existing table: rename it, create the partitioned table with the same
-- columns in the same order, a partition for every month that holds rows (and the current
-- month plus two ahead), copy every row with every column (txid included, so the seals made
-- before still verify), and drop the old table. All in the migration's one transaction,
-- under an exclusive lock: no row is lost or copied twice.

lock table public.audit_logs in access exclusive mode;

alter table public.audit_logs rename to audit_logs_unpartitioned;
alter table public.audit_logs_unpartitioned rename constraint audit_logs_pkey
    to audit_logs_unpartitioned_pkey;
drop index if exists public.audit_logs_occurred_at_idx, public.audit_logs_actor_idx,
    public.audit_logs_action_idx, public.audit_logs_target_idx, public.audit_logs_txid_idx;

-- The same columns in the same order, defaults, NOT NULLs and checks (txid's default too).
create table public.audit_logs (
    like public.audit_logs_unpartitioned including defaults including constraints,
    constraint audit_logs_pkey primary key (id, occurred_at)
) partition by range (occurred_at);

-- Created on the parent, so every partition gets them (and each new one too).
create index audit_logs_occurred_at_idx on public.audit_logs (occurred_at desc, id desc);
create index audit_logs_actor_idx on public.audit_logs (actor_id, occurred_at desc);
create index audit_logs_action_idx on public.audit_logs (action, occurred_at desc);
create index audit_logs_target_idx on public.audit_logs (target_type, target_id, occurred_at desc);
create index audit_logs_txid_idx on public.audit_logs (txid, id);

alter table public.audit_logs enable row level security;
revoke all on table public.audit_logs from anon, authenticated, service_role;
grant select on table public.audit_logs to service_role;
grant insert (id, occurred_at, received_at, action, category, actor_type, actor_id,
              target_type, target_id, tenant_id, outcome, ip, user_agent, request_id,
              metadata, ingest_path)
    on table public.audit_logs to service_role;

-- Row triggers on the parent are cloned onto every partition; TRUNCATE triggers are not
-- (a partition can be truncated by name), so each partition gets its own (below).
create trigger audit_logs_append_only before update or delete on public.audit_logs
    for each row execute function public.auditq_refuse_change();
create trigger audit_logs_no_truncate before truncate on public.audit_logs
    for each statement execute function public.auditq_refuse_change();

-- What the parent's grants and RLS do not cover: a partition is a table of its own, reachable
-- by name (and through the data API, where Supabase grants every new public table to its API
-- roles). RLS on with no policies, no grants, its own TRUNCATE guard.
create or replace function public.audit_logs_guard_partition(p_name text) returns void
language plpgsql security definer set search_path = '' as $$
begin
    execute format('alter table public.%I enable row level security', p_name);
    execute format('revoke all on table public.%I from anon, authenticated, service_role', p_name);
    execute format('create trigger audit_logs_no_truncate before truncate on public.%I'
                   ' for each statement execute function public.auditq_refuse_change()', p_name);
end;
$$;

-- The partition that holds p_month (any time in it), created if missing; its name.
-- Fails (check_violation) while the default partition holds rows of that month:
-- audit_partitions_maintain() moves them first.
create or replace function public.audit_logs_month_partition(p_month timestamptz) returns text
language plpgsql security definer set search_path = '' as $$
declare
    lo timestamptz := date_trunc('month', p_month at time zone 'UTC') at time zone 'UTC';
    hi timestamptz := lo + interval '1 month';
    name text := 'audit_logs_' || to_char(lo at time zone 'UTC', '"y"YYYY"m"MM');
begin
    if to_regclass('public.' || quote_ident(name)) is null then
        execute format('create table public.%I partition of public.audit_logs'
                       ' for values from (%L) to (%L)', name, lo, hi);
        perform public.audit_logs_guard_partition(name);
    end if;
    return name;
end;
$$;

create table public.audit_logs_default partition of public.audit_logs default;
select public.audit_logs_guard_partition('audit_logs_default');

select public.audit_logs_month_partition(m)
from (
    select distinct date_trunc('month', occurred_at at time zone 'UTC') at time zone 'UTC' as m
    from public.audit_logs_unpartitioned
    union
    select now() + make_interval(months => k) from generate_series(0, 2) as k
) months;

insert into public.audit_logs
    (id, occurred_at, received_at, action, category, actor_type, actor_id, target_type,
     target_id, tenant_id, outcome, ip, user_agent, request_id, metadata, ingest_path, txid)
select id, occurred_at, received_at, action, category, actor_type, actor_id, target_type,
       target_id, tenant_id, outcome, ip, user_agent, request_id, metadata, ingest_path, txid
from public.audit_logs_unpartitioned;

-- The row's canonical form takes the table's row type: re-created, its definition unchanged,
-- on the new table before the old table and its type go. audit_seal_next (plpgsql) resolves
-- both at run time and needs nothing.
do $$
declare
    definition text := pg_get_functiondef(
        'public.audit_row_canonical(public.audit_logs_unpartitioned)'::regprocedure);
begin
    drop function public.audit_row_canonical(public.audit_logs_unpartitioned);
    execute replace(definition, 'audit_logs_unpartitioned', 'audit_logs');
end;
$$;
revoke all on function public.audit_row_canonical(public.audit_logs) from public, anon, authenticated;
grant execute on function public.audit_row_canonical(public.audit_logs) to service_role;
drop table public.audit_logs_unpartitioned;

-- The partition job (auditq/retention/partitions.py): partitions for the current month and
-- p_ahead months ahead, and rows that landed in the default partition moved into their month's
-- partition. Moving without DELETE or UPDATE (the append-only triggers stay on): detach the
-- default partition, attach a new empty one, create the months the old one held rows for,
-- copy its rows through the parent with every column (txid included: their seals still
-- verify), drop the detached table. One transaction under the parent's exclusive lock, so no
-- reader sees a row twice or not at all. Each month moved is recorded as a critical audit
-- event (action auditq.partition.rows_moved). Only this function, owned by the migration role,
-- may do it; it returns what it moved.
create or replace function public.audit_partitions_maintain(p_ahead integer default 2)
returns table (month text, moved bigint)
language plpgsql security definer set search_path = '' as $$
declare
    k integer;
begin
    -- One maintenance at a time (the worker's lease does not cover a CLI run).
    perform pg_advisory_xact_lock(hashtext('auditq.audit_partitions_maintain'));
    if exists (select 1 from public.audit_logs_default limit 1) then
        lock table public.audit_logs in access exclusive mode;
        alter table public.audit_logs detach partition public.audit_logs_default;
        alter table public.audit_logs_default rename to audit_logs_default_moving;
        create table public.audit_logs_default partition of public.audit_logs default;
        perform public.audit_logs_guard_partition('audit_logs_default');
        create temp table pg_temp.audit_partitions_moved on commit drop as
            select to_char(date_trunc('month', d.occurred_at at time zone 'UTC'), 'YYYY-MM') as m,
                   count(*) as n, min(d.occurred_at) as first_at
            from public.audit_logs_default_moving d group by 1;
        perform public.audit_logs_month_partition(first_at) from pg_temp.audit_partitions_moved;
        insert into public.audit_logs
            (id, occurred_at, received_at, action, category, actor_type, actor_id,
             target_type, target_id, tenant_id, outcome, ip, user_agent, request_id,
             metadata, ingest_path, txid)
        select id, occurred_at, received_at, action, category, actor_type, actor_id,
               target_type, target_id, tenant_id, outcome, ip, user_agent, request_id,
               metadata, ingest_path, txid
        from public.audit_logs_default_moving;
        drop table public.audit_logs_default_moving;
    else
        create temp table pg_temp.audit_partitions_moved (m text, n bigint, first_at timestamptz)
            on commit drop;
    end if;
    for k in 0 .. greatest(p_ahead, 0) loop
        perform public.audit_logs_month_partition(now() + make_interval(months => k));
    end loop;
    insert into public.audit_logs (id, occurred_at, action, category, actor_type, actor_id,
                                   metadata, ingest_path)
    select gen_random_uuid(), now(), 'auditq.partition.rows_moved', 'critical', 'system',
           'auditq', jsonb_build_object('month', mv.m, 'rows', mv.n,
                                        'from', 'audit_logs_default'), 'direct'
    from pg_temp.audit_partitions_moved mv;
    return query select mv.m, mv.n from pg_temp.audit_partitions_moved mv order by mv.m;
    drop table pg_temp.audit_partitions_moved;
end;
$$;

revoke all on function public.audit_logs_guard_partition(text) from public, anon, authenticated;
revoke all on function public.audit_logs_month_partition(timestamptz)
    from public, anon, authenticated;
revoke all on function public.audit_partitions_maintain(integer) from public, anon, authenticated;
-- The service role may run the maintenance (a worker with only SUPABASE_URL calls it through
-- PostgREST): it only ever adds partitions and moves rows intact.
grant execute on function public.audit_partitions_maintain(integer) to service_role;

-- Retention (auditq/retention): what left the table and where it went. One row per month part
-- dropped (after its archive was written and read back) and per part restored. ``seals`` is,
-- for every seal the operation touched, which of its leaves are no longer in the table after
-- it: {"<seal_no>": {"rows": n, "sha256": hex of SHA-256("auditq/archived/v1" NUL + those
-- leaves in seal order)}}. verify takes each seal's latest entry, so a sealed row that is
-- missing counts as archived only if exactly that set is missing; the seals themselves never
-- leave audit_seals, so the chain has no gap: only rows do. Append-only, like audit_logs.
create table public.audit_archives (
    archive_no      bigint generated always as identity primary key,
    kind            text not null check (kind in ('dropped', 'restored')),
    month           text not null check (month ~ '^[0-9]{4}-[0-9]{2}$'),
    part            integer not null check (part >= 1),
    row_count       bigint not null check (row_count >= 0),
    manifest_sha256 bytea not null check (octet_length(manifest_sha256) = 32),
    archive_url     text not null,
    seals           jsonb not null default '{}'::jsonb check (jsonb_typeof(seals) = 'object'),
    happened_at     timestamptz not null default now()
);
-- A part can be dropped more than once: a restored month goes again without a second copy.
create index audit_archives_month_idx on public.audit_archives (month, part);
alter table public.audit_archives enable row level security;
revoke all on table public.audit_archives from anon, authenticated, service_role;
grant select on table public.audit_archives to service_role;  -- verify reads it
create trigger audit_archives_append_only before update or delete on public.audit_archives
    for each row execute function public.auditq_refuse_change();
create trigger audit_archives_no_truncate before truncate on public.audit_archives
    for each statement execute function public.auditq_refuse_change();

-- The record and its critical audit event (auditq.retention.month_<kind>), in the caller's
-- transaction.
create or replace function public.audit_archives_record(
    p_kind text, p_month text, p_part integer, p_rows bigint, p_manifest_sha256 bytea,
    p_url text, p_seals jsonb
) returns void
language plpgsql security definer set search_path = '' as $$
begin
    insert into public.audit_archives
        (kind, month, part, row_count, manifest_sha256, archive_url, seals)
    values (p_kind, p_month, p_part, p_rows, p_manifest_sha256, p_url, p_seals);
    insert into public.audit_logs (id, occurred_at, action, category, actor_type, actor_id,
                                   metadata, ingest_path)
    values (gen_random_uuid(), now(), 'auditq.retention.month_' || p_kind, 'critical',
            'system', 'auditq',
            jsonb_build_object('month', p_month, 'part', p_part, 'rows', p_rows,
                               'manifest_sha256', encode(p_manifest_sha256, 'hex'),
                               'archive_url', p_url),
            'direct');
end;
$$;

-- Retention's drop of one archived month: record it, then detach and drop its partition. No
-- row is deleted: the partition goes whole. Refused unless the partition holds exactly the
-- rows archived (checked under the parent's exclusive lock, so none can arrive in between;
-- rows are never removed, so the same count is the same rows).
create or replace function public.audit_logs_drop_month(
    p_month text, p_part integer, p_rows bigint, p_manifest_sha256 bytea, p_url text,
    p_seals jsonb
) returns void
language plpgsql security definer set search_path = '' as $$
declare
    name text := 'audit_logs_y' || replace(p_month, '-', 'm');
    actual bigint;
begin
    perform pg_advisory_xact_lock(hashtext('auditq.audit_partitions_maintain'));
    lock table public.audit_logs in access exclusive mode;
    execute format('select count(*) from public.%I', name) into actual;
    if actual <> p_rows then
        raise exception 'partition % holds % rows, the archive %', name, actual, p_rows
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    perform public.audit_archives_record('dropped', p_month, p_part, p_rows,
                                         p_manifest_sha256, p_url, p_seals);
    execute format('alter table public.audit_logs detach partition public.%I', name);
    execute format('drop table public.%I', name);
end;
$$;

-- Restore's import: rows as archived (canonical JSON arrays, SEALED_COLUMNS order of
-- auditq/seals/canonical.py) back into the table with every column, txid included;
-- idempotent (a row already there is skipped). Its month's partition must exist.
create or replace function public.audit_logs_import(p_rows jsonb) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
    n bigint;
begin
    insert into public.audit_logs
        (id, occurred_at, received_at, action, category, outcome, actor_type, actor_id,
         target_type, target_id, tenant_id, ip, user_agent, request_id, ingest_path,
         metadata, txid)
    select (r->>0)::uuid, (r->>1)::timestamptz, (r->>2)::timestamptz, r->>3, r->>4, r->>5,
           r->>6, r->>7, r->>8, r->>9, r->>10, (r->>11)::inet, r->>12, r->>13, r->>14,
           r->15, (r->>16)::xid8
    from jsonb_array_elements(p_rows) r
    on conflict (id, occurred_at) do nothing;
    get diagnostics n = row_count;
    return n;
end;
$$;

revoke all on function public.audit_archives_record(text, text, integer, bigint, bytea, text, jsonb)
    from public, anon, authenticated, service_role;
revoke all on function public.audit_logs_drop_month(text, integer, bigint, bytea, text, jsonb)
    from public, anon, authenticated, service_role;
revoke all on function public.audit_logs_import(jsonb) from public, anon, authenticated, service_role;

-- The dashboard's retention panel: each partition, its month (null for the default), rows
-- (exact under 100,000, else the planner's estimate) and size on disk. Callable through
-- PostgREST by the service role.
create or replace function public.audit_partitions_overview()
returns table (name text, month text, row_count bigint, bytes bigint)
language plpgsql stable security definer set search_path = '' as $$
declare
    p record;
begin
    for p in
        select c.oid, c.relname, c.reltuples from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'public.audit_logs'::regclass order by c.relname
    loop
        name := p.relname;
        month := case when p.relname ~ '^audit_logs_y[0-9]{4}m[0-9]{2}$'
                      then substr(p.relname, 13, 4) || '-' || substr(p.relname, 18, 2) end;
        if p.reltuples < 100000 then
            execute format('select count(*) from public.%I', p.relname) into row_count;
        else
            row_count := p.reltuples::bigint;
        end if;
        bytes := pg_total_relation_size(p.oid);
        return next;
    end loop;
end;
$$;
revoke all on function public.audit_partitions_overview() from public, anon, authenticated;
grant execute on function public.audit_partitions_overview() to service_role;
