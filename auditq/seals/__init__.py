"""Tamper-evident seals over ``public.audit_logs``: signed, chained hashes of stored rows.

What a seal covers, and why concurrent workers cannot slip a row past it
-----------------------------------------------------------------------
Workers commit concurrently and out of order, so neither ``received_at`` nor an id or a
sequence number tells which rows are final: a transaction that took sequence number 5 may
commit after the one that took 6, and a seal "up to 6" would then miss 5 forever.

Each row therefore records the id of the transaction that inserted it (column ``txid``,
``xid8``, default ``pg_current_xact_id()``; the service role cannot set it). The sealer asks
the database for ``pg_snapshot_xmin(pg_current_snapshot())``: every transaction with a
smaller id has ended, committed or rolled back, so the set of rows with ``txid`` below that
horizon can never change again by legitimate inserts. A seal covers the half-open range
``[from_txid, to_txid)`` with ``to_txid`` <= the horizon, and the ranges tile the line: seal
n+1 starts where seal n ended (seal 1 starts at 0). Consequences:

- a row whose transaction commits late had a txid >= the horizon of every seal made while
  it was open, so it falls into a later seal, never outside all of them;
- a row that shows up later inside a sealed range (only possible by forging ``txid``, as a
  superuser) is reported by verify as ``unexpected``; an edited row as ``modified``, a
  deleted one as ``missing``;
- nothing locks audit_logs: inserts never wait for the sealer. The cost is that one long
  open transaction anywhere in the cluster holds the horizon back, and rows wait (the
  "unsealed" backlog and its age show that).

A seal ends only between transactions (its bounds are txids): after the transaction holding
its MAX_ROWS-th row, or before the first transaction with a row stored less than
AUDITQ_SEAL_GRACE seconds ago (database clock). The database computes a seal's leaves
(``public.audit_seal_next``, one call per seal through psycopg or PostgREST's rpc), so a
worker with only SUPABASE_URL and the service key seals as fast as one with DATABASE_URL.

A seal stores its leaves (row id + row hash, 48 bytes a row, in (txid, id) order), their
root, the previous seal's hash, its number, range, row count, time and public key; its hash
covers all of that, and an Ed25519 signature covers the hash. Keeping the leaves lets verify
name the row that changed, and lets an archived month (rows moved out of the table) still be
checked against the seals that cover it. What is hashed is the stored row (canonical form in
``canonical.py``), ciphertext included where fields are encrypted.

Concurrency: one sealer at a time under a Redis lease (worker job); if two run anyway, both
build seal n+1 on seal n's hash and the primary key on ``seal_no`` plus the unique
``prev_hash`` and ``from_txid`` let exactly one in. A seal is one INSERT: a sealer killed
mid-pass leaves whole seals only.

Modules: ``canonical`` (row form, hashes), ``signing`` (keys), ``sealer`` (a pass),
``verify`` (the check), ``job`` (the worker's leased job), ``status`` (what the dashboard,
the API and alert metrics read).
"""
