-- Alert matches compared natively on text columns, so the indexes apply (issue 18's rules).
--
-- 20261129000600 compared every column as jsonb (to_jsonb(l.action) = any (...)), which no
-- index can serve: a rate rule's count (alert_event_counts, every alert interval) read every
-- row stored in its window. The default "failed logins" rule, over a 5-minute window, read
-- 200,000 rows (126 ms, three processes) to find none; at a steady 1,000 events/s it would
-- read 300,000 rows every run, and more than a run's interval at higher rates.
--
-- A text column as jsonb is always a JSON string, so only the match's strings can equal it:
-- `l.action = any ('{...}'::text[])` holds for exactly the rows the jsonb form held for
-- (byte equality both ways), and audit_logs_action_idx (action, occurred_at desc) serves
-- it. A match of only non-strings on a text column is false, as it was. Other columns (id,
-- ip) and metadata.<key> keep the jsonb comparison. Keys are still quoted with %I / %L and
-- values with %L (the array's text form, which round-trips any string), so no match can
-- inject SQL. Stable, not immutable: it reads the column types from the catalog.

create or replace function public.alert_match_sql(m jsonb) returns text
language sql
stable
set search_path = ''
as $$
    select coalesce(string_agg(
        case
            when c.key like 'metadata.%' then
                format('(l.metadata -> %L) = any (array(select jsonb_array_elements(%L::jsonb)))',
                       substr(c.key, 10), v.wanted)
            when t.is_text and t.strings is null then 'false'
            when t.is_text then format('l.%I = any (%L::text[])', c.key, t.strings)
            else
                format('to_jsonb(l.%I) = any (array(select jsonb_array_elements(%L::jsonb)))',
                       c.key, v.wanted)
        end,
        ' and '), 'false')
    from jsonb_each(m) c
    cross join lateral (
        select case when jsonb_typeof(c.value) = 'array' then c.value
                    else jsonb_build_array(c.value) end as wanted
    ) v
    cross join lateral (
        select coalesce((select a.atttypid = 'text'::regtype
                           from pg_attribute a
                          where a.attrelid = 'public.audit_logs'::regclass
                            and a.attname = c.key and not a.attisdropped), false) as is_text,
               (select array_agg(e #>> '{}')
                  from jsonb_array_elements(v.wanted) e
                 where jsonb_typeof(e) = 'string') as strings
    ) t
$$;

revoke all on function public.alert_match_sql(jsonb) from public, anon, authenticated;
grant execute on function public.alert_match_sql(jsonb) to service_role;
