"""Jinja filters and the context every template gets (role, nav, refresh interval)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, g

from dashboard.charts import fmt
from dashboard.nav import NAV


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600)} h"


def timestamp(value: datetime | float | None) -> str:
    if value is None:
        return "–"
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(float(value), UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _context() -> dict[str, Any]:
    settings = current_app.extensions["auditq"].settings
    return {
        "role": getattr(g, "role", None),
        "nav_items": NAV,
        "refresh_seconds": settings.refresh_seconds,
        "refresh_ms": int(settings.refresh_seconds * 1000),
    }


def init_app(app: Flask) -> None:
    app.add_template_global(fmt, "fmt")  # numbers: 1,234 / 12.5 / "–"
    app.add_template_filter(duration, "duration")
    app.add_template_filter(timestamp, "timestamp")
    app.context_processor(_context)
