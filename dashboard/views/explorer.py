"""The audit-log explorer: filter, keyset pages (newest first), CSV and NDJSON export.

Audit data is attacker-controlled; templates render it autoescaped, never ``|safe``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Blueprint, Response, abort, g, render_template, request, stream_with_context

from auditq.stores import StoreError
from dashboard import explorer as ex
from dashboard.audit import record
from dashboard.resources import resources

bp = Blueprint("explorer", __name__, url_prefix="/explorer")


@bp.route("/")
def index() -> str | tuple[str, int]:
    parsed = ex.parse_filters(request.args)
    before_text = request.args.get("before")
    before = ex.decode_cursor(before_text)
    rows: list = []
    next_cursor = None
    error = None
    store = resources().store
    if parsed.errors:
        error = "Fix the filters marked below."
    elif before_text and before is None:
        error = "That page link is not valid; start again from the newest events."
    elif store is None:
        error = "No store is configured (SUPABASE_URL or DATABASE_URL)."
    else:
        try:
            rows, next_cursor = ex.page(store, _reader(), parsed.filters, before)
        except StoreError as exc:
            error = f"The store did not answer: {exc}"
    filter_args = {k: v for k, v in parsed.values.items() if v}
    status = 400 if parsed.errors or (before_text and before is None) else 200
    return render_template(
        "explorer.html",
        rows=rows,
        columns=ex.COLUMNS,
        values=parsed.values,
        errors=parsed.errors,
        error=error,
        filter_args=filter_args,
        next_cursor=next_cursor,
        first_page=before is None,
        choices=ex.CHOICES,
        text_filters=ex.TEXT_FILTERS,
        pretty=lambda value: json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True),
    ), status


@bp.route("/export.<fmt>")
def export(fmt: str) -> Response:
    if fmt not in ("csv", "ndjson"):
        abort(404)
    parsed = ex.parse_filters(request.args)
    if parsed.errors:
        abort(400, "; ".join(f"{k}: {v}" for k, v in parsed.errors.items()))
    store = resources().store
    if store is None:
        abort(503, "No store is configured.")
    rows = ex.iter_rows(store, _reader(), parsed.filters)
    try:
        first = next(rows, None)  # fail before the 200 is sent if the store is down
    except StoreError as exc:
        abort(503, f"The store did not answer: {exc}")

    def all_rows():
        if first is not None:
            yield first
            yield from rows

    # Reading the trail out in bulk is itself worth a line in it.
    record(
        "auditq.explorer.export",
        target_type="audit_logs",
        metadata={"format": fmt, "filters": {k: v for k, v in parsed.values.items() if v}},
    )
    lines = ex.csv_lines(all_rows()) if fmt == "csv" else ex.ndjson_lines(all_rows())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(
        stream_with_context(lines),
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="auditq-events-{stamp}.{fmt}"'},
    )


def _reader() -> ex.Reader:
    return ex.Reader.for_role(resources().settings, g.role)
