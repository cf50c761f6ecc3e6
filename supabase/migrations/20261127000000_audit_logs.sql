-- The audit trail. Append-only: rows are inserted by auditq (service role) and never changed.

create table if not exists public.audit_logs (
    id          uuid primary key,
    occurred_at timestamptz not null,
    received_at timestamptz not null default now(),
    action      text not null check (char_length(action) between 1 and 256),
    category    text not null default 'normal' check (category in ('normal', 'critical')),
    actor_type  text,
    actor_id    text,
    target_type text,
    target_id   text,
    tenant_id   text,
    outcome     text check (outcome in ('success', 'failure', 'denied')),
    ip          inet,
    user_agent  text,
    request_id  text,
    metadata    jsonb not null default '{}'::jsonb check (jsonb_typeof(metadata) = 'object'),
    ingest_path text not null default 'queue' check (ingest_path in ('queue', 'direct'))
);

-- The explorer filters by time, actor, action and target, newest first (keyset on time, id).
create index if not exists audit_logs_occurred_at_idx on public.audit_logs (occurred_at desc, id desc);
create index if not exists audit_logs_actor_idx on public.audit_logs (actor_id, occurred_at desc);
create index if not exists audit_logs_action_idx on public.audit_logs (action, occurred_at desc);
create index if not exists audit_logs_target_idx on public.audit_logs (target_type, target_id, occurred_at desc);

-- RLS on with no policies: anon and authenticated see and write nothing through the data API.
alter table public.audit_logs enable row level security;

-- Supabase grants everything on new public tables to its API roles by default; take it back.
revoke all on table public.audit_logs from anon, authenticated, service_role;
grant select, insert on table public.audit_logs to service_role;

-- The service role bypasses RLS, so RLS alone protects nothing from it: refuse row
-- changes in a trigger, which binds every role but a superuser that disables it.
create or replace function public.audit_logs_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception 'audit_logs is append-only: % refused', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

drop trigger if exists audit_logs_append_only on public.audit_logs;
create trigger audit_logs_append_only
    before update or delete on public.audit_logs
    for each row execute function public.audit_logs_refuse_change();

drop trigger if exists audit_logs_no_truncate on public.audit_logs;
create trigger audit_logs_no_truncate
    before truncate on public.audit_logs
    for each statement execute function public.audit_logs_refuse_change();
