"""One retention pass: archive every month older than the cutoff, read it back, then drop it.

For every partition whose whole month ended before now - AUDITQ_RETENTION_DAYS:

1. rows that landed in the default partition are first moved into their month
   (``audit_partitions_maintain``), so a late row of an old month is archived too;
2. a month with rows no seal covers yet waits for the sealer (when sealing is on);
3. the month is written to AUDITQ_ARCHIVE_URL (``archive.write_part``), unless a whole part
   for exactly these rows is there already (a pass that died before the drop: no second copy);
4. it is read back: file SHA-256 and row count against the manifest and the table;
5. ``audit_logs_drop_month`` records it (``public.audit_archives``, with what each touched seal
   now misses, and a critical audit event) and detaches and drops the partition, in one
   transaction, refused if a row arrived since step 3.

Nothing is ever DELETEd. An unreachable destination stops the pass before any drop; the next
pass tries again. Retention needs DDL rights, so it connects with DATABASE_URL (the migration
role's connection string); a worker with only SUPABASE_URL does nothing and says so. Two
passes at once: a session advisory lock lets one run; the other gets RetentionBusy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from auditq.config import Settings
from auditq.retention import archive
from auditq.retention.destinations import ArchiveUnavailable, Destination, open_destination
from auditq.retention.partitions import MONTHS_AHEAD, month_of, names, partition_name
from auditq.seals import canonical
from auditq.seals.verify import archived_digest
from auditq.stores.seals import SEAL_COLUMNS, seal_record

log = logging.getLogger(__name__)

_LOCK_KEY = 0x61756469_7472  # "auditr": one retention pass (or restore) at a time
_SEAL_SELECT = ", ".join(f"{c}::text as {c}" if c.endswith("_txid") else c for c in SEAL_COLUMNS)


class RetentionUnavailable(Exception):
    """Retention cannot run with this configuration (exit 2; nothing archived or dropped)."""


class RetentionBusy(Exception):
    """Another retention pass or restore holds the lock."""


@dataclass
class MonthOutcome:
    month: str
    rows: int
    action: str  # would_archive | dropped | waiting_for_seals
    part: int | None = None
    manifest_sha256: str | None = None


@dataclass
class PassResult:
    cutoff: datetime | None
    months: list[MonthOutcome] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "months": [vars(m) for m in self.months],
        }


def cutoff_for(settings: Settings, now: datetime | None = None) -> datetime | None:
    if settings.retention_days is None:
        return None
    return (now or datetime.now(UTC)) - timedelta(days=settings.retention_days)


def database_dsn(settings: Settings, command: str) -> str:
    if settings.database_url is None:
        only = " (only SUPABASE_URL is set)" if settings.supabase_url else ""
        raise RetentionUnavailable(
            f"{command} needs DATABASE_URL{only}: it creates and drops partitions, which the"
            " data API cannot; nothing was archived, dropped or restored"
        )
    return settings.database_url.get_secret_value()


def connect_locked(dsn: str) -> psycopg.Connection:
    """An autocommit session holding the retention lock (RetentionBusy if another has it)."""
    conn = psycopg.connect(dsn, autocommit=True)
    if not one(conn, "select pg_try_advisory_lock(%s)", (_LOCK_KEY,))[0]:
        conn.close()
        raise RetentionBusy("another retention pass or restore is running")
    return conn


def retention_pass(
    settings: Settings, *, dry_run: bool = False, now: datetime | None = None
) -> PassResult:
    cutoff = cutoff_for(settings, now)
    result = PassResult(cutoff)
    if cutoff is None:
        return result  # AUDITQ_RETENTION_DAYS unset: keep forever
    dsn = database_dsn(settings, "retention")
    if settings.archive_url is None and not dry_run:
        raise RetentionUnavailable("AUDITQ_ARCHIVE_URL is not set: nothing is dropped unarchived")
    with connect_locked(dsn) as conn:
        if not dry_run:
            conn.execute("select * from public.audit_partitions_maintain(%s)", (MONTHS_AHEAD,))
        due = due_months(conn, cutoff)
        if dry_run:
            # Rows still in the default partition are moved into their month first.
            for month, rows in _due_in_default(conn, cutoff):
                due[month] = due.get(month, 0) + rows
            result.months = [
                MonthOutcome(m, rows, "would_archive") for m, rows in sorted(due.items())
            ]
            return result
        assert settings.archive_url is not None
        destination = open_destination(settings.archive_url, settings.s3_endpoint)
        for month, rows in due.items():
            result.months.append(archive_and_drop(conn, destination, month, rows))
    return result


def one(conn: psycopg.Connection, query: Any, params: Any = None) -> tuple[Any, ...]:
    """The one row a query returns (an aggregate, a function call)."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


def due_months(conn: psycopg.Connection, cutoff: datetime) -> dict[str, int]:
    """Month partitions (``YYYY-MM``, oldest first) that ended before the cutoff: their rows."""
    due = {}
    for name in names(conn):
        month = month_of(name)
        if month is not None and is_due(month, cutoff):
            due[month] = one(conn, f"select count(*) from public.{name}")[0]
    return due


def is_due(month: str, cutoff: datetime) -> bool:
    """Whether the whole month (``YYYY-MM``, UTC) ended at or before the cutoff."""
    year, number = int(month[:4]), int(month[5:7])
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC) <= cutoff


def _due_in_default(conn: psycopg.Connection, cutoff: datetime) -> list[tuple[str, int]]:
    return conn.execute(
        "select to_char(date_trunc('month', occurred_at at time zone 'UTC'), 'YYYY-MM'), count(*)"
        " from public.audit_logs_default"
        " where date_trunc('month', occurred_at at time zone 'UTC') + interval '1 month'"
        " <= %s at time zone 'UTC' group by 1",
        (cutoff,),
    ).fetchall()


def archive_and_drop(
    conn: psycopg.Connection, destination: Destination, month: str, rows: int
) -> MonthOutcome:
    name = partition_name(month)
    (head,) = one(conn, "select max(to_txid)::text from public.audit_seals")
    if head is not None:
        (waiting,) = one(
            conn, f"select count(*) from public.{name} where txid >= %s::xid8", (head,)
        )
        if waiting:
            log.warning("retention: %s has %d row(s) not sealed yet; next pass", month, waiting)
            return MonthOutcome(month, rows, "waiting_for_seals")
    last = conn.execute(
        "select part, manifest_sha256 from public.audit_archives"
        " where kind = 'dropped' and month = %s order by part desc limit 1",
        (month,),
    ).fetchone()
    if last is not None and _all_archived(conn, destination, month, name):
        # A restored month going again: its rows are in the archive already; no new copy.
        part, manifest_sha256 = last
        state = missing_state(conn, covering_seals(conn, name), exclude=name)
        _drop(conn, month, part, rows, manifest_sha256, destination.url, state)
        return MonthOutcome(month, rows, "dropped_again", part, bytes(manifest_sha256).hex())
    part = 1 + (last[0] if last else 0)
    prefix = archive.part_prefix(month, part)
    seals = covering_seals(conn, name)
    written = _whole_part(destination, prefix, rows, name)
    if written is None:
        archive.write_part(destination, month, part, name, _lines(conn, name), seals)
        written = archive.read_part(destination, prefix)
        problems = written.problems()
        if problems or written.manifest["rows"] != rows:
            raise ArchiveUnavailable(f"read-back of {prefix} failed: {'; '.join(problems)}")
    else:
        log.warning("retention: %s already archived at %s; dropping it now", month, prefix)
    state = missing_state(conn, seals, exclude=name)
    _drop(conn, month, part, rows, written.manifest_sha256, destination.url, state)
    log.warning("retention: archived and dropped %s (%d rows) at %s", month, rows, prefix)
    return MonthOutcome(month, rows, "dropped", part, written.manifest_sha256.hex())


def _drop(
    conn: psycopg.Connection,
    month: str,
    part: int,
    rows: int,
    manifest_sha256: bytes,
    url: str,
    state: dict[str, Any],
) -> None:
    with conn.transaction():
        conn.execute(
            "select public.audit_logs_drop_month(%s, %s, %s, %s, %s, %s::jsonb)",
            (month, part, rows, manifest_sha256, url, json.dumps(state)),
        )


def _all_archived(
    conn: psycopg.Connection, destination: Destination, month: str, name: str
) -> bool:
    """Whether every row now in the month's partition is in an archived part already."""
    archived = {
        archive.row_of(line).id
        for prefix in archive.part_prefixes(destination, month)
        for line in archive.read_part(destination, prefix).lines()
    }
    return all(str(row[0]) in archived for row in conn.execute(f"select id from public.{name}"))


def _whole_part(destination: Destination, prefix: str, rows: int, name: str) -> archive.Part | None:
    """The part a pass that died before its drop left, if it holds exactly these rows."""
    if destination.get(prefix + archive.MANIFEST) is None:
        return None
    try:
        part = archive.read_part(destination, prefix)
    except archive.BadArchive:
        return None
    same = part.manifest["rows"] == rows and part.manifest["partition"] == name
    return part if same and not part.problems() else None


def _lines(conn: psycopg.Connection, name: str) -> Iterator[bytes]:
    # A server-side cursor: a month of any size streams through in bounded memory.
    with conn.transaction(), conn.cursor(name="auditq_retention_rows") as cur:
        cur.itersize = 5000
        cur.execute(
            f"select public.audit_row_canonical(l) from public.{name} l order by l.txid, l.id"
        )
        for (text,) in cur:
            yield text.encode()


def covering_seals(conn: psycopg.Connection, name: str) -> list[dict[str, Any]]:
    """Every seal whose txid range overlaps the partition's rows, leaves included."""
    low, high = one(conn, f"select min(txid)::text, max(txid)::text from public.{name}")
    if low is None:
        return []
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(
            f"select {_SEAL_SELECT} from public.audit_seals"
            " where to_txid > %s::xid8 and from_txid <= %s::xid8 order by seal_no",
            (low, high),
        ).fetchall()
    return [seal_record(row) for row in rows]


def missing_state(
    conn: psycopg.Connection, seals: list[dict[str, Any]], exclude: str | None = None
) -> dict[str, dict[str, Any]]:
    """For each seal: its leaves not in the table (``exclude``, a partition about to be
    dropped, counted as gone), as verify checks them (auditq.seals.verify.archived_digest)."""
    state = {}
    skip = " and l.tableoid <> %s::regclass" if exclude else ""
    for seal in seals:
        params: list[Any] = [str(seal["from_txid"]), str(seal["to_txid"])]
        if exclude:
            params.append(f"public.{exclude}")
        present = {
            row[0]
            for row in conn.execute(
                "select l.id from public.audit_logs l"
                " where l.txid >= %s::xid8 and l.txid < %s::xid8" + skip,
                params,
            )
        }
        leaves = seal["leaves"]
        gone = b"".join(
            leaves[i : i + canonical.LEAF_SIZE]
            for i in range(0, len(leaves), canonical.LEAF_SIZE)
            if _uuid(leaves[i : i + 16]) not in present
        )
        state[str(seal["seal_no"])] = {
            "rows": len(gone) // canonical.LEAF_SIZE,
            "sha256": archived_digest(gone).hex(),
        }
    return state


def _uuid(raw: bytes) -> UUID:
    return UUID(bytes=raw)
