-- The alert evaluator's lease in the store: who evaluates while Redis (which holds the
-- primary lease) is down. One row per lease name; the holder renews it on every run.
-- Taken and renewed through alert_take_lease(), so the postgres store (SQL) and the
-- supabase store (PostgREST rpc) share one atomic statement and the database's clock.

create table if not exists public.alert_leases (
    name        text primary key,
    holder      text not null,
    expires_at  timestamptz not null
);
alter table public.alert_leases enable row level security;
revoke all on table public.alert_leases from anon, authenticated, service_role;
grant select, insert, update, delete on table public.alert_leases to service_role;

-- True if p_holder now holds the lease (taken, renewed, or taken over after expiry).
create or replace function public.alert_take_lease(p_name text, p_holder text, p_ttl double precision)
returns boolean
language sql
volatile
set search_path = ''
as $$
    with taken as (
        insert into public.alert_leases as l (name, holder, expires_at)
        values (p_name, p_holder, clock_timestamp() + make_interval(secs => p_ttl))
        on conflict (name) do update
            set holder = excluded.holder, expires_at = excluded.expires_at
            where l.holder = excluded.holder or l.expires_at < clock_timestamp()
        returning 1
    )
    select exists (select 1 from taken)
$$;

create or replace function public.alert_release_lease(p_name text, p_holder text)
returns boolean
language sql
volatile
set search_path = ''
as $$
    with gone as (
        delete from public.alert_leases where name = p_name and holder = p_holder returning 1
    )
    select exists (select 1 from gone)
$$;

revoke execute on function public.alert_take_lease(text, text, double precision)
    from public, anon, authenticated;
revoke execute on function public.alert_release_lease(text, text)
    from public, anon, authenticated;
grant execute on function public.alert_take_lease(text, text, double precision) to service_role;
grant execute on function public.alert_release_lease(text, text) to service_role;
