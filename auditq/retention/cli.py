"""``python -m auditq retention [--dry-run] | restore URL --month YYYY-MM`` and
``verify --archive URL``. Exit codes as verify's: 0 done / intact, 1 findings, 2 could not run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from auditq.config import load_settings
from auditq.seals import signing
from auditq.seals.cli import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK

_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


def add_commands(commands: argparse._SubParsersAction) -> None:
    retention = commands.add_parser(
        "retention", help="archive then drop the months older than AUDITQ_RETENTION_DAYS"
    )
    retention.add_argument("--dry-run", action="store_true", help="only list what is due")
    retention.add_argument("--json", action="store_true", help="print one JSON object")
    retention.set_defaults(run=retention_command)
    restore = commands.add_parser("restore", help="verify an archived month and import it again")
    restore.add_argument("url", help="the archive: file:///path or s3://bucket/prefix")
    restore.add_argument("--month", required=True, type=_month, help="YYYY-MM")
    restore.set_defaults(run=restore_command)


def retention_command(args: argparse.Namespace) -> int:
    from auditq.retention.destinations import ArchiveUnavailable
    from auditq.retention.retain import RetentionBusy, RetentionUnavailable, retention_pass

    settings = load_settings()
    if settings.retention_days is None:
        print("AUDITQ_RETENTION_DAYS is not set: every month is kept")
        return EXIT_OK
    try:
        result = retention_pass(settings, dry_run=args.dry_run)
    except (RetentionUnavailable, RetentionBusy, ArchiveUnavailable) as error:
        print(f"auditq retention: {error}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(result.to_json()))
        return EXIT_OK
    for month in result.months:
        print(f"{month.month}: {month.rows} row(s): {month.action.replace('_', ' ')}")
    print(f"cutoff {result.cutoff:%Y-%m-%d %H:%M}Z: {len(result.months)} month(s) due")
    return EXIT_OK


def restore_command(args: argparse.Namespace) -> int:
    from auditq.retention.archive import BadArchive
    from auditq.retention.destinations import ArchiveUnavailable
    from auditq.retention.restore import NothingArchived, restore_month
    from auditq.retention.retain import RetentionBusy, RetentionUnavailable
    from auditq.seals.verify import NoSeals

    settings = load_settings()
    try:
        result = restore_month(settings, args.url, args.month, signing.checker(settings))
    except (
        ArchiveUnavailable,
        BadArchive,
        NothingArchived,
        NoSeals,
        RetentionBusy,
        RetentionUnavailable,
    ) as error:
        print(f"auditq restore: {error}", file=sys.stderr)
        return EXIT_ERROR
    for finding in result.report.findings:
        print(finding)
    if not result.report.ok:
        print(f"FINDINGS: {args.month} not restored")
        return EXIT_FINDINGS
    print(f"restored {args.month}: {result.imported} row(s) imported of {result.report.rows}")
    return EXIT_OK


def verify_archive_command(args: argparse.Namespace) -> int:
    """verify --archive URL: every whole part under URL, offline (no database)."""
    from auditq.retention.archive import BadArchive, part_prefixes, read_part
    from auditq.retention.destinations import ArchiveUnavailable, open_destination
    from auditq.seals.verify import NoSeals, verify_archive

    settings = load_settings()
    checker = signing.checker(settings)
    try:
        destination = open_destination(args.archive, settings.s3_endpoint)
        prefixes = part_prefixes(destination)
        if not prefixes:
            raise BadArchive(f"no archived month under {args.archive}")
        report = verify_archive((read_part(destination, p) for p in prefixes), checker)
    except (ArchiveUnavailable, BadArchive, NoSeals, ValueError) as error:
        print(f"auditq verify: could not verify: {error}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({**report.to_json(), "parts": prefixes}))
    else:
        for finding in report.findings:
            print(finding)
        state = "intact" if report.ok else "FINDINGS"
        print(
            f"{state}: {report.rows} archived row(s) in {len(prefixes)} part(s),"
            f" {report.seals} seal(s)"
        )
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _month(text: str) -> str:
    if not _MONTH.match(text):
        raise argparse.ArgumentTypeError("give a month as YYYY-MM")
    return text
