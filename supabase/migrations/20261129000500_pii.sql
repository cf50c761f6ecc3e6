-- Personal fields encrypted per subject (auditq/pii). See auditq/pii/__init__.py for the design.

-- The ciphertext of a row's personal fields: {"v": 1, "k": data key id, "f": [field names],
-- "c": base64 of nonce || AES-256-GCM ciphertext}. The clear columns (ip, user_agent, the
-- metadata keys named in "f") are left out of the row. Null when the row has none or was
-- written without AUDITQ_PII_KEY.
alter table public.audit_logs add column if not exists pii jsonb
    check (pii is null or jsonb_typeof(pii) = 'object');
grant insert (pii) on table public.audit_logs to service_role;

-- One data key per subject (the event's actor_id; '' for events without one), wrapped with
-- AUDITQ_PII_KEY (base64 of nonce || AES-256-GCM ciphertext, the key id as associated data).
-- NOT an audit table: erasure (python -m auditq erase) deletes a subject's row, which makes
-- every personal field encrypted under it unreadable for good while the audit rows, and the
-- seals over their ciphertext, stay as they were. So no append-only trigger here.
create table if not exists public.audit_pii_keys (
    subject    text primary key,
    key_id     uuid not null unique,
    wrapped    text not null,
    created_at timestamptz not null default now()
);
-- RLS on with no policies for anon or authenticated: only the service role (which bypasses
-- RLS) reads keys; the API roles see nothing, even if a grant were added by mistake.
alter table public.audit_pii_keys enable row level security;
revoke all on table public.audit_pii_keys from anon, authenticated, service_role;
grant select, insert, delete on table public.audit_pii_keys to service_role;
-- Rotating AUDITQ_PII_KEY rewraps each data key in place (python -m auditq pii-rewrap).
grant update (wrapped) on table public.audit_pii_keys to service_role;

-- Seals cover the stored ciphertext: a row with pii hashes its canonical array with pii's
-- jsonb text appended (auditq/seals/canonical.py); a row without it hashes exactly as before,
-- so seals made before this migration still verify. Destroying a key changes no stored byte.
create or replace function public.audit_row_canonical(r public.audit_logs) returns text
language sql stable as $$
    select (jsonb_build_array(
        r.id::text,
        to_char(r.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        to_char(r.received_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        r.action, r.category, r.outcome, r.actor_type, r.actor_id, r.target_type,
        r.target_id, r.tenant_id, abbrev(r.ip), r.user_agent, r.request_id, r.ingest_path,
        r.metadata,
        r.txid::text
    ) || case when r.pii is null then '[]'::jsonb else jsonb_build_array(r.pii) end)::text;
$$;
revoke all on function public.audit_row_canonical(public.audit_logs) from public, anon, authenticated;
grant execute on function public.audit_row_canonical(public.audit_logs) to service_role;
