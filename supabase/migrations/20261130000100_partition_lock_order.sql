-- The partition functions lock audit_logs before any of its partitions, as Postgres' own DDL
-- and every insert do.
--
-- DROP or DETACH of a partition locks the parent, then the partition, then the default
-- partition (its bounds change). audit_partitions_maintain read the default partition first
-- (to see whether rows wait there) and locked the parent only when it inserted its
-- rows_moved events; audit_partitions_overview counted each partition and never locked the
-- parent. Either one, run while an operator or a tool dropped a partition, could deadlock
-- with it; Postgres then aborted one side (seen in the tests: the worker's maintenance
-- against a test's DROP). Both now take the parent first, in the weakest mode that orders
-- them: maintenance in ROW EXCLUSIVE (what its own insert takes; inserts go on), the
-- overview in ACCESS SHARE. The overview is volatile now: a stable function may not LOCK.
-- The retention drop (audit_logs_drop_month) already takes the maintenance lock and then
-- the parent.

create or replace function public.audit_partitions_maintain(p_ahead integer default 2)
returns table (month text, moved bigint)
language plpgsql security definer set search_path = '' as $$
declare
    k integer;
begin
    -- One maintenance at a time (the worker's lease does not cover a CLI run).
    perform pg_advisory_xact_lock(hashtext('auditq.audit_partitions_maintain'));
    lock table only public.audit_logs in row exclusive mode;  -- the parent first (above)
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
             metadata, ingest_path, txid, pii)
        select id, occurred_at, received_at, action, category, actor_type, actor_id,
               target_type, target_id, tenant_id, outcome, ip, user_agent, request_id,
               metadata, ingest_path, txid, pii
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

create or replace function public.audit_partitions_overview()
returns table (name text, month text, row_count bigint, bytes bigint)
language plpgsql volatile security definer set search_path = '' as $$
declare
    p record;
begin
    lock table only public.audit_logs in access share mode;  -- the parent first (above)
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
