"""Retention without DELETE: monthly partitions, archives that verify offline, restore.

Partitions
----------
``public.audit_logs`` is range-partitioned by month on ``occurred_at`` (UTC), one partition
per month (``audit_logs_yYYYYmMM``) and ``audit_logs_default`` for anything else
(migration ``*_partitions.sql``, which converts an existing table in one transaction and keeps
every column, ``txid`` included). The unique key is ``(id, occurred_at)``; inserts stay
idempotent because a redelivered event has the same id and occurred_at. Every partition has
RLS on, no API grants, the append-only row triggers (cloned from the parent) and its own
TRUNCATE guard. The partition job (hourly, ``partitions``) keeps months up to two ahead and
moves rows that landed in the default partition into their month, through one audited
SECURITY DEFINER function that copies rows intact and drops the detached old default: no
row is ever UPDATEd or DELETEd, and each move is a critical audit event.

Retention
---------
``retain`` archives each month older than AUDITQ_RETENTION_DAYS (``archive``: gzip NDJSON of
each row's canonical text + a manifest with the covering seals and their leaves), reads it
back, records it and drops the partition (``audit_logs_drop_month``). It needs DATABASE_URL
(DDL); with only SUPABASE_URL it does nothing and says so (exit 2; the worker records the
error, which ``status.retention_failing`` turns into an alert metric).

How the seal chain spans a dropped month
----------------------------------------
Seals are never dropped: ``audit_seals`` keeps every seal, leaves included, so the chain
itself has no gap, only rows leave. Each drop records in ``public.audit_archives``, for every
seal the month touched, exactly which of its leaves are then gone from the table (count and
a digest, ``auditq.seals.verify.archived_digest``). ``verify`` on the table counts a seal's
missing rows as ``archived`` only when they are exactly that set; any other missing row (or
one more) is a ``missing`` finding. ``verify --archive URL`` checks an archive alone, with
no database: file hashes and counts, each copied seal's hash, root and signature, links
between consecutive seals, and every archived row against its seal's leaf. The manifest's
SHA-256 is in ``audit_archives`` and in the critical audit event of the drop, which a later
seal covers.

Modules: ``partitions`` (the SQL calls), ``destinations`` (file:// and s3://), ``archive``
(format), ``retain`` (a pass), ``restore``, ``job`` (the worker's leased jobs), ``status``
(the last pass, the alert metric), ``cli``.
"""
