-- The encrypted personal fields (column pii, 20261129000500) travel with their rows wherever
-- retention moves them: out of the default partition into their month, and back from an
-- archive on restore (an archive line is the row's canonical array, pii its 18th element when
-- present). Both functions as in 20261129000400, with pii in their column lists; without it a
-- moved or restored row would lose its ciphertext and fail verify as modified.

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

create or replace function public.audit_logs_import(p_rows jsonb) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
    n bigint;
begin
    insert into public.audit_logs
        (id, occurred_at, received_at, action, category, outcome, actor_type, actor_id,
         target_type, target_id, tenant_id, ip, user_agent, request_id, ingest_path,
         metadata, txid, pii)
    select (r->>0)::uuid, (r->>1)::timestamptz, (r->>2)::timestamptz, r->>3, r->>4, r->>5,
           r->>6, r->>7, r->>8, r->>9, r->>10, (r->>11)::inet, r->>12, r->>13, r->>14,
           r->15, (r->>16)::xid8, r->17
    from jsonb_array_elements(p_rows) r
    on conflict (id, occurred_at) do nothing;
    get diagnostics n = row_count;
    return n;
end;
$$;
