"""Plain helpers of the retention tests: events in given months, the partitions and their rows."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from auditq.events import build_event
from auditq.retention.partitions import names


def at(year: int, month: int, day: int = 15) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def month_events(months: list[tuple[int, int]], per_month: int = 3):
    return [
        build_event(
            {"action": "doc.read", "actor_id": f"u{i}", "occurred_at": at(y, m).isoformat()}
        )
        for (y, m) in months
        for i in range(per_month)
    ]


def partitions(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            name: conn.execute(f"select count(*) from public.{name}").fetchone()[0]
            for name in names(conn)
        }
