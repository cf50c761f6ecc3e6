-- Alerting: the dashboard's durable configuration (channels, rules, silences) and the
-- evaluator's durable state (rule state, outbox, history). Redis holds nothing here.
--
-- Unlike audit_logs these are ordinary read/write tables for the service role (auditq's
-- processes talk to them through PostgREST with it, or directly with DATABASE_URL).
-- RLS is on with no policies, so anon and authenticated can do nothing through the data API;
-- their default grants are revoked as well. Every time column ends in `_at`.

create table if not exists public.alert_channels (
    id          uuid primary key default gen_random_uuid(),
    name        text not null unique check (char_length(name) between 1 and 100),
    kind        text not null check (kind in ('slack', 'pagerduty', 'webhook', 'email')),
    -- Secrets (webhook URLs, routing keys, SMTP passwords) live here; the dashboard and
    -- the API only ever show them masked.
    config      jsonb not null default '{}'::jsonb check (jsonb_typeof(config) = 'object'),
    enabled     boolean not null default true,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

create table if not exists public.alert_rules (
    id                  uuid primary key default gen_random_uuid(),
    name                text not null unique check (char_length(name) between 1 and 100),
    metric              text not null,
    op                  text not null check (op in ('>', '>=', '<', '<=')),
    threshold           double precision not null,
    clear_threshold     double precision,
    for_seconds         integer not null default 0 check (for_seconds >= 0),
    keep_firing_seconds integer not null default 0 check (keep_firing_seconds >= 0),
    no_data             text not null default 'keep' check (no_data in ('ok', 'alerting', 'keep')),
    severity            text not null default 'warning'
                        check (severity in ('critical', 'error', 'warning', 'info')),
    channel_ids         jsonb not null default '[]'::jsonb check (jsonb_typeof(channel_ids) = 'array'),
    repeat_seconds      integer not null default 0 check (repeat_seconds >= 0),
    send_resolved       boolean not null default true,
    enabled             boolean not null default true,
    -- Set on the rules auditq seeds on a new install, so seeding is idempotent.
    seed_key            text unique,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);

-- One row per rule: where its state machine is, so a restart resumes it exactly.
create table if not exists public.alert_rule_state (
    rule_id           uuid primary key references public.alert_rules (id) on delete cascade,
    state             text not null default 'normal'
                      check (state in ('normal', 'pending', 'firing', 'recovering')),
    since_at          timestamptz,
    pending_at        timestamptz,
    firing_at         timestamptz,
    recovering_at     timestamptz,
    episode           integer not null default 0,
    notified          boolean not null default false,
    notified_at       timestamptz,
    repeats           integer not null default 0,
    last_value        double precision,
    updated_at        timestamptz not null default now()
);

create table if not exists public.alert_silences (
    id          uuid primary key default gen_random_uuid(),
    rule_id     uuid not null references public.alert_rules (id) on delete cascade,
    starts_at   timestamptz not null,
    ends_at     timestamptz not null,
    comment     text not null default '' check (char_length(comment) <= 1000),
    created_by  text,
    created_at  timestamptz not null default now(),
    check (ends_at > starts_at)
);
create index if not exists alert_silences_ends_at_idx on public.alert_silences (ends_at);

-- Notifications waiting to be sent (or sent, or given up). `key` is deterministic
-- (rule, episode, kind, channel), so an evaluator that dies between writing the outbox and
-- saving the rule's state writes the same rows again, which are ignored.
create table if not exists public.alert_outbox (
    id               uuid primary key default gen_random_uuid(),
    key              text not null unique,
    -- set null: a rule deleted while firing still gets its resolve out
    rule_id          uuid references public.alert_rules (id) on delete set null,
    channel_id       uuid references public.alert_channels (id) on delete cascade,
    kind             text not null check (kind in ('trigger', 'repeat', 'resolve')),
    message          jsonb not null check (jsonb_typeof(message) = 'object'),
    status           text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null default now(),
    last_error       text,
    created_at       timestamptz not null default now(),
    sent_at          timestamptz
);
create index if not exists alert_outbox_due_idx on public.alert_outbox (status, next_attempt_at);

-- What happened: state changes and delivery outcomes. Names are copied so history reads
-- well after a rule or channel is deleted.
create table if not exists public.alert_history (
    id            uuid primary key default gen_random_uuid(),
    happened_at   timestamptz not null default now(),
    event         text not null check (event in ('state', 'delivery', 'test')),
    rule_id       uuid,
    rule_name     text,
    channel_id    uuid,
    channel_name  text,
    from_state    text,
    to_state      text,
    value         double precision,
    kind          text,
    status        text,
    attempts      integer,
    detail        text
);
create index if not exists alert_history_happened_at_idx on public.alert_history (happened_at desc);

-- Small key/value facts, e.g. that the default rules were seeded once.
create table if not exists public.alert_meta (
    key         text primary key,
    value       jsonb not null default '{}'::jsonb,
    created_at  timestamptz not null default now()
);

do $$
declare
    t text;
begin
    foreach t in array array['alert_channels', 'alert_rules', 'alert_rule_state',
                             'alert_silences', 'alert_outbox', 'alert_history', 'alert_meta']
    loop
        execute format('alter table public.%I enable row level security', t);
        execute format('revoke all on table public.%I from anon, authenticated, service_role', t);
        execute format('grant select, insert, update, delete on table public.%I to service_role', t);
    end loop;
end;
$$;
