"""Retention on real Postgres with file:// archives: archive, read back, drop; verify on the
table and on the archive; the faults (destination unreachable, a crash between archive and
drop, two passes at once); restore."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest

from auditq.config import ConfigError, Settings, load_settings
from auditq.retention import archive, retain
from auditq.retention.destinations import ArchiveUnavailable, open_destination
from auditq.retention.restore import restore_month
from auditq.retention.retain import RetentionBusy, RetentionUnavailable, retention_pass
from auditq.seals.sealer import seal_pass
from auditq.seals.verify import verify, verify_archive
from auditq.stores.postgres import PostgresStore
from tests.auditq.retention.helpers import month_events, partitions
from tests.auditq.seals.helpers import events, superuser

NOW = datetime(2025, 4, 10, tzinfo=UTC)  # with 30 days: January and February 2025 are due


@pytest.fixture
def db(clean_db):
    store = PostgresStore(clean_db, timeout=5)
    yield store
    store.close()


@pytest.fixture
def history(db, signer):
    """4 rows in Jan 2025, 3 in Feb, 2 in Mar, 5 now; all sealed (seals mix the months)."""
    old = month_events([(2025, 1)], 4) + month_events([(2025, 2)], 3)
    db.insert_events(old[:5])  # one transaction, so one seal holds January and February rows
    db.insert_events(old[5:] + month_events([(2025, 3)], 2))
    db.insert_events(events(5))
    assert seal_pass(db, signer, grace=0).rows == 14
    return old


def settings(clean_db, tmp_path, **extra) -> Settings:
    extra = {"archive_url": f"file://{tmp_path}/arch", **extra}
    return Settings(database_url=clean_db, retention_days=30, **extra)


def parts(url: str) -> list[archive.Part]:
    destination = open_destination(url)
    return [archive.read_part(destination, p) for p in archive.part_prefixes(destination)]


def count(dsn: str, query: str, *params) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()[0]


def test_retention_days_under_one_is_refused():
    with pytest.raises(ConfigError, match="AUDITQ_RETENTION_DAYS"):
        load_settings(retention_days=0)


def test_a_pass_archives_then_drops_and_both_sides_verify(db, history, clean_db, tmp_path, checker):
    config = settings(clean_db, tmp_path)
    result = retention_pass(config, now=NOW)

    assert [(m.month, m.rows, m.action) for m in result.months] == [
        ("2025-01", 4, "dropped"),
        ("2025-02", 3, "dropped"),
    ]
    left = partitions(clean_db)
    assert "audit_logs_y2025m01" not in left and "audit_logs_y2025m02" not in left
    assert left["audit_logs_y2025m03"] == 2
    assert count(clean_db, "select count(*) from audit_logs where occurred_at < '2025-03-01'") == 0
    assert count(clean_db, "select count(*) from audit_archives where kind = 'dropped'") == 2
    assert (
        count(
            clean_db,
            "select count(*) from audit_logs"
            " where action = 'auditq.retention.month_dropped' and category = 'critical'",
        )
        == 2
    )
    # The table: rows of dropped months are archived, not missing; the chain is whole.
    report = verify(db, checker)
    assert report.ok, report.findings
    assert (report.rows, report.archived) == (7, 7)
    # The archive on its own, with no database.
    archived = parts(config.archive_url)
    assert [p.prefix for p in archived] == ["2025-01/part-001/", "2025-02/part-001/"]
    offline = verify_archive(archived, checker)
    assert offline.ok, offline.findings
    assert offline.rows == 7
    manifest = archived[0].manifest
    assert manifest["rows"] == 4 and manifest["seals"]
    recorded = count(
        clean_db,
        "select encode(manifest_sha256, 'hex') from audit_archives where month = '2025-01'",
    )
    assert recorded == archived[0].manifest_sha256.hex()


def test_a_row_deleted_after_a_drop_is_still_missing(db, history, clean_db, tmp_path, checker):
    retention_pass(settings(clean_db, tmp_path), now=NOW)
    with superuser(clean_db) as conn:  # a March row, in the seal that also covers Jan/Feb
        (gone,) = conn.execute("select id::text from audit_logs_y2025m03 limit 1").fetchone()
        conn.execute("delete from audit_logs where id = %s", (gone,))
    report = verify(db, checker)
    # The seal's missing rows are no longer exactly the archived set: all of them are named
    # (which one was archived is not in the table's record), the deleted one among them.
    assert not report.ok and {f.kind for f in report.findings} == {"missing"}
    assert gone in {f.row_id for f in report.findings}
    assert len(report.findings) == 8


def test_an_edited_archive_is_caught_offline(db, history, clean_db, tmp_path, checker):
    config = settings(clean_db, tmp_path)
    retention_pass(config, now=NOW)
    part = parts(config.archive_url)[0]
    lines = list(part.lines())
    lines[1] = lines[1].replace(b"doc.read", b"doc.edit")
    import gzip
    import hashlib

    forged = gzip.compress(b"\n".join(lines) + b"\n")
    part.rows_gz = forged
    assert [f.kind for f in verify_archive([part], checker).findings] == ["bad_archive", "modified"]
    # Even with the manifest's file hash rewritten to match, the row is caught.
    part.manifest["files"][0]["sha256"] = hashlib.sha256(forged).hexdigest()
    assert [f.kind for f in verify_archive([part], checker).findings] == ["modified"]


def test_dry_run_lists_and_changes_nothing(db, history, clean_db, tmp_path):
    before = partitions(clean_db)
    result = retention_pass(settings(clean_db, tmp_path), dry_run=True, now=NOW)
    assert [(m.month, m.action) for m in result.months] == [
        ("2025-01", "would_archive"),
        ("2025-02", "would_archive"),
    ]
    assert partitions(clean_db) == before
    assert not (tmp_path / "arch").exists()


def test_unset_retention_keeps_everything(db, history, clean_db, tmp_path):
    config = Settings(database_url=clean_db, archive_url=f"file://{tmp_path}/arch")
    assert retention_pass(config, now=NOW).months == []
    assert count(clean_db, "select count(*) from audit_logs where occurred_at < '2025-03-01'") == 7


def test_only_supabase_url_says_so_and_does_nothing(postgrest, clean_db, tmp_path):
    config = Settings(
        supabase_url=postgrest.url,
        supabase_service_role_key=postgrest.service_key,
        retention_days=30,
        archive_url=f"file://{tmp_path}/arch",
    )
    with pytest.raises(RetentionUnavailable, match="needs DATABASE_URL .only SUPABASE_URL"):
        retention_pass(config, now=NOW)


def test_an_unreachable_destination_drops_nothing_and_the_next_pass_does(
    db, history, clean_db, tmp_path, checker
):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the archive directory should be")
    with pytest.raises(ArchiveUnavailable):
        retention_pass(settings(clean_db, tmp_path, archive_url=f"file://{blocked}/x"), now=NOW)
    assert partitions(clean_db)["audit_logs_y2025m01"] == 4  # moved there, not dropped
    assert count(clean_db, "select count(*) from audit_archives") == 0
    assert verify(db, checker).ok

    assert len(retention_pass(settings(clean_db, tmp_path), now=NOW).months) == 2
    assert verify(db, checker).ok


def test_a_crash_between_archive_and_drop_resumes_without_a_second_copy(
    db, history, clean_db, tmp_path, checker, monkeypatch
):
    config = settings(clean_db, tmp_path)

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt  # the process dies after the archive, before the drop

    with monkeypatch.context() as patch:
        patch.setattr(retain, "missing_state", crash)
        with pytest.raises(KeyboardInterrupt):
            retention_pass(config, now=NOW)
    written = tmp_path / "arch" / "2025-01" / "part-001"
    first = {p.name: p.stat().st_mtime_ns for p in written.iterdir()}
    assert partitions(clean_db)["audit_logs_y2025m01"] == 4  # archived, not dropped

    result = retention_pass(config, now=NOW)
    assert [m.action for m in result.months] == ["dropped", "dropped"]
    assert {p.name: p.stat().st_mtime_ns for p in written.iterdir()} == first  # not rewritten
    assert sorted(p.name for p in (tmp_path / "arch").iterdir()) == ["2025-01", "2025-02"]
    assert [p.prefix for p in parts(config.archive_url)][0] == "2025-01/part-001/"
    assert verify(db, checker).ok


def test_two_passes_at_once_one_runs_the_other_exits(db, history, clean_db, tmp_path):
    holder = retain.connect_locked(clean_db)
    try:
        with pytest.raises(RetentionBusy):
            retention_pass(settings(clean_db, tmp_path), now=NOW)
    finally:
        holder.close()
    assert count(clean_db, "select count(*) from audit_logs where occurred_at < '2025-03-01'") == 7
    assert len(retention_pass(settings(clean_db, tmp_path), now=NOW).months) == 2


def test_rows_that_arrive_late_for_a_dropped_month_are_archived_as_a_new_part(
    db, history, clean_db, tmp_path, checker, signer
):
    config = settings(clean_db, tmp_path)
    retention_pass(config, now=NOW)
    db.insert_events(month_events([(2025, 1)], 2))  # lands in the default partition
    seal_pass(db, signer, grace=0)
    result = retention_pass(config, now=NOW)
    assert [(m.month, m.part, m.rows) for m in result.months] == [("2025-01", 2, 2)]
    assert count(clean_db, "select count(*) from audit_logs where occurred_at < '2025-03-01'") == 0
    assert verify(db, checker).ok
    assert verify_archive(parts(config.archive_url), checker).rows == 9


def test_restore_brings_a_month_back_idempotently(db, history, clean_db, tmp_path, checker):
    config = settings(clean_db, tmp_path)
    retention_pass(config, now=NOW)
    first = restore_month(config, config.archive_url, "2025-01", checker)
    assert first.report.ok and first.imported == 4
    again = restore_month(config, config.archive_url, "2025-01", checker)
    assert again.imported == 0
    assert partitions(clean_db)["audit_logs_y2025m01"] == 4
    report = verify(db, checker)
    assert report.ok, report.findings
    assert (report.archived, report.rows) == (3, 11)  # February still archived
    assert (
        count(
            clean_db,
            "select count(*) from audit_logs where action = 'auditq.retention.month_restored'",
        )
        == 2
    )
    # The next pass drops the restored month again, without a second copy in the archive.
    result = retention_pass(config, now=NOW)
    assert [(m.month, m.action, m.part) for m in result.months] == [("2025-01", "dropped_again", 1)]
    assert sorted(p.name for p in (tmp_path / "arch" / "2025-01").iterdir()) == ["part-001"]
    report = verify(db, checker)
    assert report.ok, report.findings
    assert report.archived == 7


def test_restore_refuses_an_archive_that_does_not_verify(db, history, clean_db, tmp_path, checker):
    config = settings(clean_db, tmp_path)
    retention_pass(config, now=NOW)
    manifest = tmp_path / "arch" / "2025-01" / "part-001" / "manifest.json"
    body = json.loads(manifest.read_text())
    body["files"][0]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(body))
    result = restore_month(config, config.archive_url, "2025-01", checker)
    assert not result.report.ok and result.imported == 0
    assert "audit_logs_y2025m01" not in partitions(clean_db)
