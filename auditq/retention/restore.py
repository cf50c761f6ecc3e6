"""``restore``: verify an archived month offline, then import it again, idempotently.

Rows go back through ``audit_logs_import`` (SECURITY DEFINER) with every column, txid
included, so they verify against their seals as before; a row already in the table is
skipped. The restore is recorded (``public.audit_archives``, kind ``restored``, with what
each seal now misses) with a critical audit event, in the import's transaction.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from auditq.config import Settings
from auditq.retention import archive
from auditq.retention.destinations import open_destination
from auditq.retention.partitions import MONTHS_AHEAD
from auditq.retention.retain import connect_locked, database_dsn, missing_state, one
from auditq.seals.signing import Checker
from auditq.seals.verify import Report, verify_archive

BATCH = 5000  # rows per import call


class NothingArchived(Exception):
    """No whole part of that month under the URL."""


@dataclass
class RestoreResult:
    report: Report
    imported: int = 0


def restore_month(settings: Settings, url: str, month: str, checker: Checker) -> RestoreResult:
    destination = open_destination(url, settings.s3_endpoint)
    prefixes = archive.part_prefixes(destination, month)
    if not prefixes:
        raise NothingArchived(f"no archived part of {month} under {url}")
    parts = [archive.read_part(destination, prefix) for prefix in prefixes]
    result = RestoreResult(verify_archive(parts, checker))
    if not result.report.ok:
        return result  # nothing imported from an archive that does not verify
    with connect_locked(database_dsn(settings, "restore")) as conn:
        conn.execute("select * from public.audit_partitions_maintain(%s)", (MONTHS_AHEAD,))
        conn.execute(
            "select public.audit_logs_month_partition(%s::timestamptz)", (f"{month}-15T00:00:00Z",)
        )
        with conn.transaction():
            for part in parts:
                lines = part.lines()
                while batch := list(itertools.islice(lines, BATCH)):
                    body = b"[" + b",".join(batch) + b"]"
                    (count,) = one(
                        conn, "select public.audit_logs_import(%s::jsonb)", (body.decode(),)
                    )
                    result.imported += count
            seals = {seal["seal_no"]: seal for part in parts for seal in part.seals}
            state = missing_state(conn, list(seals.values()))
            last = parts[-1]
            conn.execute(
                "select public.audit_archives_record('restored', %s, %s, %s, %s, %s, %s::jsonb)",
                (
                    month,
                    last.manifest["part"],
                    result.imported,
                    last.manifest_sha256,
                    url,
                    json.dumps(state),
                ),
            )
    return result
