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

-- A match as an SQL condition on the row alias l, compared natively (indexes usable, no
-- per-row JSON of the whole row): a column's value as jsonb, or metadata -> key, equal to the
-- value or to one of the array's values. Keys are quoted with %I / %L and values with %L, so
-- no match can inject SQL (an unknown column is an error; the API accepts known ones only).
create or replace function public.alert_match_sql(m jsonb) returns text
language sql
immutable
set search_path = ''
as $$
    select coalesce(string_agg(
        format('%s = any (array(select jsonb_array_elements(%L::jsonb)))',
               case when c.key like 'metadata.%' then format('(l.metadata -> %L)', substr(c.key, 10))
                    else format('to_jsonb(l.%I)', c.key) end,
               case when jsonb_typeof(c.value) = 'array' then c.value
                    else jsonb_build_array(c.value) end),
        ' and '), 'false')
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
    hits text;
    found jsonb;
begin
    if jsonb_array_length(p_rules) = 0 then
        return jsonb_build_object('horizon', hi::text, 'events', '[]'::jsonb);
    end if;
    select string_agg(format('case when l.received_at >= %L::timestamptz and (%s) then %s end',
                             r.rule ->> 'since', public.alert_match_sql(r.rule -> 'match'), r.ord),
                      ', ')
      into hits
      from jsonb_array_elements(p_rules) with ordinality as r(rule, ord);
    execute format(
        'select coalesce(jsonb_agg(jsonb_build_object(''txid'', x.txid::text, ''event'', x.event,'
        ' ''rules'', x.rules) order by x.txid, x.id), ''[]'')'
        ' from (select l.txid, l.id, to_jsonb(l) - ''txid'' as event, m.rules'
        '         from public.audit_logs l'
        '        cross join lateral (select array_remove(array[%s], null) as rules) m'
        '        where l.txid >= $1 and l.txid < $2 and (l.txid > $1 or $3 is null or l.id > $3)'
        '          and cardinality(m.rules) > 0'
        '        order by l.txid, l.id limit $4) x', hits)
      into found
      using p_from::xid8, hi, p_after, p_limit;
    return jsonb_build_object('horizon', hi::text, 'events', found);
end;
$$;

-- Matching events per group value ({value: count}) that occurred at or after p_since and were
-- stored at or after p_stored_since (the rule's creation). p_group null: one group, '*'.
create or replace function public.alert_event_counts(
    p_match jsonb, p_group text, p_since timestamptz, p_stored_since timestamptz
) returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
    grouped text := case when p_group is null then quote_literal('*')
                         when p_group like 'metadata.%'
                             then format('l.metadata ->> %L', substr(p_group, 10))
                         else format('to_jsonb(l.%I) #>> ''{}''', p_group) end;
    counts jsonb;
begin
    execute format(
        'select coalesce(jsonb_object_agg(c.g, c.n), ''{}''::jsonb)'
        '  from (select %s as g, count(*) as n from public.audit_logs l'
        '         where l.occurred_at >= $1 and l.received_at >= $2 and (%s)'
        '         group by 1) c where c.g is not null',
        grouped, public.alert_match_sql(p_match))
      into counts
      using p_since, p_stored_since;
    return counts;
end;
$$;

revoke all on function public.alert_match_sql(jsonb) from public, anon, authenticated;
revoke all on function public.alert_event_batch(text, uuid, jsonb, integer)
    from public, anon, authenticated;
revoke all on function public.alert_event_counts(jsonb, text, timestamptz, timestamptz)
    from public, anon, authenticated;
grant execute on function public.alert_match_sql(jsonb) to service_role;
grant execute on function public.alert_event_batch(text, uuid, jsonb, integer) to service_role;
grant execute on function public.alert_event_counts(jsonb, text, timestamptz, timestamptz)
    to service_role;

-- Event rules see rows from here on (never history): their watermark starts at today's
-- horizon, so a rule created before the evaluator's first run still sees its events.
insert into public.alert_meta (key, value)
values ('event_watermark',
        jsonb_build_object('txid', pg_snapshot_xmin(pg_current_snapshot())::text))
on conflict (key) do nothing;
