-- Alert rules on what the audit log says (issue 18).
--
-- kind 'metric' (the default: every existing rule) watches auditq's own metrics as before;
-- kind 'event' notifies each matching event once; kind 'event_rate' counts matching events
-- per group (ip, actor_id, ...) over a sliding window and fires per group value; kind
-- 'seal_head' sends each new seal head to its channels (a copy of the chain's head off-box).
--
-- A match is a JSON object: field -> value (exact) or array of values (any of them); a field
-- is an audit_logs column or 'metadata.<key>'. Matching runs here, in the database, so only
-- matching rows travel, and both stores (psycopg, PostgREST rpc) run the same code.

alter table public.alert_rules
    add column if not exists kind text not null default 'metric'
        check (kind in ('metric', 'event', 'event_rate', 'seal_head')),
    add column if not exists match jsonb check (match is null or jsonb_typeof(match) = 'object'),
    add column if not exists group_by text,
    add column if not exists window_seconds integer check (window_seconds between 1 and 86400);
alter table public.alert_rules alter column metric drop not null;
alter table public.alert_rules alter column op drop not null;
alter table public.alert_rules alter column threshold drop not null;
alter table public.alert_rules drop constraint if exists alert_rules_kind_fields;
alter table public.alert_rules add constraint alert_rules_kind_fields check (
    case kind
        when 'metric' then metric is not null and op is not null and threshold is not null
        when 'event' then match is not null
        when 'seal_head' then true
        else match is not null and group_by is not null and window_seconds is not null
             and op is not null and threshold is not null
    end
);

-- A rate rule's state per group value ({value: state}), only values not back to normal.
alter table public.alert_rule_state
    add column if not exists groups jsonb not null default '{}'::jsonb;

-- A field of an event (to_jsonb of its row): a column, or 'metadata.<key>'.
create or replace function public.alert_event_field(r jsonb, path text) returns jsonb
language sql
immutable
set search_path = ''
as $$
    select case when path like 'metadata.%' then r -> 'metadata' -> substr(path, 10)
                else r -> path end
$$;

-- Every field of the match holds: equal to the value, or one of the array's values.
create or replace function public.alert_event_matches(r jsonb, m jsonb) returns boolean
language sql
immutable
set search_path = ''
as $$
    select coalesce(bool_and(
        case when jsonb_typeof(c.value) = 'array'
             then c.value @> jsonb_build_array(public.alert_event_field(r, c.key))
             else public.alert_event_field(r, c.key) = c.value end), false)
    from jsonb_each(m) c
$$;

-- The events rules of kind 'event' must see, each exactly once: rows whose transaction id is
-- at or past the watermark and below the horizon, pg_snapshot_xmin(pg_current_snapshot()).
-- Every transaction below the horizon has ended, so that set of rows is final: a row whose
-- transaction commits late has a txid >= the horizon of every call made while it was open,
-- and is returned by a later call (the same idea as the seals, see auditq/seals/__init__.py).
-- Queued and direct (critical) writes alike. The watermark is (p_from txid, p_after id):
-- rows of p_from's transaction with an id <= p_after were seen already (p_after null: none
-- were). p_rules: [{"match": {...}, "since": timestamptz}]; a rule applies to rows stored
-- from its creation on. Returns {"horizon", "events": [{"txid", "event", "rules": [1-based
-- indexes into p_rules]}]} in (txid, id) order, at most p_limit events.
create or replace function public.alert_event_batch(
    p_from text, p_after uuid, p_rules jsonb, p_limit integer
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
    hi xid8 := pg_snapshot_xmin(pg_current_snapshot());
    lo xid8 := p_from::xid8;
    found jsonb;
begin
    select coalesce(jsonb_agg(jsonb_build_object('txid', x.txid::text, 'event', x.event,
                                                 'rules', x.rules) order by x.txid, x.id), '[]')
      into found
      from (
        select l.txid, l.id, to_jsonb(l) - 'txid' as event, hits.rules
          from public.audit_logs l
         cross join lateral (
            select array_agg(r.ord) as rules
              from jsonb_array_elements(p_rules) with ordinality as r(rule, ord)
             where l.received_at >= (r.rule ->> 'since')::timestamptz
               and public.alert_event_matches(to_jsonb(l), r.rule -> 'match')
         ) hits
         where l.txid >= lo and l.txid < hi and hits.rules is not null
           and (l.txid > lo or p_after is null or l.id > p_after)
           and jsonb_array_length(p_rules) > 0
         order by l.txid, l.id
         limit p_limit
      ) x;
    return jsonb_build_object('horizon', hi::text, 'events', found);
end;
$$;

-- Matching events per group value ({value: count}) that occurred at or after p_since and were
-- stored at or after p_stored_since (the rule's creation). p_group null: one group, '*'.
create or replace function public.alert_event_counts(
    p_match jsonb, p_group text, p_since timestamptz, p_stored_since timestamptz
) returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_object_agg(c.g, c.n), '{}'::jsonb)
      from (
        select case when p_group is null then '*'
                    else public.alert_event_field(to_jsonb(l), p_group) #>> '{}' end as g,
               count(*) as n
          from public.audit_logs l
         where l.occurred_at >= p_since and l.received_at >= p_stored_since
           and public.alert_event_matches(to_jsonb(l), p_match)
         group by 1
      ) c
     where c.g is not null
$$;

revoke all on function public.alert_event_field(jsonb, text) from public, anon, authenticated;
revoke all on function public.alert_event_matches(jsonb, jsonb) from public, anon, authenticated;
revoke all on function public.alert_event_batch(text, uuid, jsonb, integer)
    from public, anon, authenticated;
revoke all on function public.alert_event_counts(jsonb, text, timestamptz, timestamptz)
    from public, anon, authenticated;
grant execute on function public.alert_event_field(jsonb, text) to service_role;
grant execute on function public.alert_event_matches(jsonb, jsonb) to service_role;
grant execute on function public.alert_event_batch(text, uuid, jsonb, integer) to service_role;
grant execute on function public.alert_event_counts(jsonb, text, timestamptz, timestamptz)
    to service_role;

-- Event rules see rows from here on (never history): their watermark starts at today's
-- horizon, so a rule created before the evaluator's first run still sees its events.
insert into public.alert_meta (key, value)
values ('event_watermark',
        jsonb_build_object('txid', pg_snapshot_xmin(pg_current_snapshot())::text))
on conflict (key) do nothing;
