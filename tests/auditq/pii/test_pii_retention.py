"""Encrypted personal fields survive what retention does to rows: the move out of the
default partition and an archive's restore keep the ciphertext (and so the seals)."""

from __future__ import annotations

from datetime import UTC, datetime

from auditq.config import Settings
from auditq.events import build_event
from auditq.pii.reader import reveal
from auditq.pii.writer import sealer
from auditq.retention.partitions import maintain
from auditq.retention.restore import restore_month
from auditq.retention.retain import retention_pass
from auditq.seals.sealer import seal_pass
from auditq.seals.verify import verify
from auditq.stores import EventFilters
from auditq.stores.postgres import PostgresStore
from tests.auditq.pii.helpers import KEY, rows_of


def old_logins(year: int, month: int) -> list:
    return [
        build_event(
            {
                "action": "user.login",
                "actor_id": f"u{i}",
                "ip": f"198.51.100.{i}",
                "occurred_at": datetime(year, month, 15, 12, tzinfo=UTC).isoformat(),
                "metadata": {"email": f"u{i}@example.test"},
            }
        )
        for i in range(3)
    ]


def clear_values(store, settings) -> set[tuple[str, str]]:
    rows = store.query_events(EventFilters(action="user.login"))
    reveal(rows, store, settings, "clear")
    return {(row["ip"], row["metadata"]["email"]) for row in rows}


EXPECTED = {(f"198.51.100.{i}", f"u{i}@example.test") for i in range(3)}


def test_a_move_out_of_the_default_partition_keeps_the_ciphertext(clean_db, signer, checker):
    settings = Settings(database_url=clean_db, pii_key=KEY)
    store = PostgresStore(clean_db, timeout=5)
    try:
        store.insert_rows(
            sealer(settings, store)(rows_of(old_logins(2019, 4)))
        )  # no partition: default
        seal_pass(store, signer, grace=0)
        assert maintain(settings) == {"2019-04": 3}
        assert clear_values(store, settings) == EXPECTED
        report = verify(store, checker)
        assert report.ok, report.findings
    finally:
        store.close()


def test_a_restored_month_keeps_the_ciphertext(clean_db, tmp_path, signer, checker):
    settings = Settings(
        database_url=clean_db,
        pii_key=KEY,
        retention_days=30,
        archive_url=f"file://{tmp_path}/arch",
    )
    store = PostgresStore(clean_db, timeout=5)
    try:
        store.insert_rows(sealer(settings, store)(rows_of(old_logins(2025, 1))))
        seal_pass(store, signer, grace=0)
        retention_pass(settings, now=datetime(2025, 4, 10, tzinfo=UTC))
        assert clear_values(store, settings) == set()  # January is archived and dropped
        restored = restore_month(settings, settings.archive_url, "2025-01", checker)
        assert restored.report.ok and restored.imported == 3
        assert clear_values(store, settings) == EXPECTED
        report = verify(store, checker)
        assert report.ok, report.findings
    finally:
        store.close()
