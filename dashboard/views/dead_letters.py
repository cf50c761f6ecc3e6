"""Dead letters: list (bounded pages), inspect one, requeue one or all, discard one.

Actions are POSTs (CSRF-checked and admin-only in the access hook) that redirect back with
a flash message; each is written to the audit log. With AUDITQ_SHARDS, ``?shard=i`` picks
the shard's dead-letter stream (none: shard 0, the only one without shards).
"""

from __future__ import annotations

import redis
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from dashboard import dead_letters as dl
from dashboard.audit import record
from dashboard.resources import resources

bp = Blueprint("dead_letters", __name__, url_prefix="/dead-letters")

DISCARDED_EVENT_CHARS = 16_000
TRUNCATED = (
    "Only the start of this event was kept (it was over AUDITQ_MAX_EVENT_BYTES), so it "
    "cannot be requeued; discard it once you have seen what it was."
)
FULL = (
    "The queue is full (AUDITQ_MAX_QUEUE): nothing more was requeued. "
    "Wait for the workers to drain it, then try again."
)


def _shard() -> int:
    """The shard a page or action is about (``?shard=``); 404 for one that does not exist."""
    raw = request.args.get("shard", "0")
    if raw == "0":
        return 0
    try:
        exists = raw.isdigit() and len(raw) < 4 and int(raw) < resources().shards()
    except redis.RedisError:
        abort(503, "Redis unreachable.")
    if not exists:
        abort(404, "No such shard.")
    return int(raw)


def _with_shard(shard: int) -> dict[str, int]:
    """What identifies a dead letter besides its id, for links and the audit log."""
    return {"shard": shard} if shard else {}


@bp.route("/")
def index() -> str:
    res = resources()
    before = request.args.get("before")
    shard = _shard()
    try:
        letters, older = dl.page(res, before, shard)
        counts = dl.counts(res, res.shards())
    except redis.RedisError as error:
        return render_template(
            "dead_letters.html",
            letters=[],
            older=None,
            total=None,
            before=None,
            shard=shard,
            counts=[],
            error=f"Redis unreachable ({type(error).__name__})",
        )
    return render_template(
        "dead_letters.html",
        letters=letters,
        older=older,
        total=counts[shard],
        before=before,
        shard=shard,
        counts=counts,
        error=None,
    )


@bp.route("/<entry_id>")
def show(entry_id: str) -> str:
    try:
        letter = dl.get(resources(), entry_id, _shard())
    except dl.NotFound:
        abort(404, "No such dead letter (it may have been requeued or discarded).")
    return render_template("dead_letter.html", letter=letter)


@bp.route("/<entry_id>/requeue", methods=["POST"])
def requeue(entry_id: str) -> Response:
    shard = _shard()
    try:
        result = dl.requeue(resources(), entry_id, shard)
    except dl.NotFound:
        flash("That dead letter is gone (already requeued or discarded).", "warning")
        return redirect(url_for(".index", shard=shard or None), code=303)
    except dl.Truncated:
        flash(TRUNCATED, "error")
        return redirect(url_for(".show", entry_id=entry_id, shard=shard or None), code=303)
    if result.queue_full:
        flash(FULL, "error")
        return redirect(url_for(".show", entry_id=entry_id, shard=shard or None), code=303)
    letter, new_id = result.moved[0]
    record(
        "auditq.dead_letter.requeue",
        target_type="dead_letter",
        target_id=letter.id,
        metadata={
            "dead_letter_id": letter.id,
            "event_id": letter.event_id,
            "original_entry_id": letter.entry_id,
            "queue_entry_id": new_id,
            "reason": _loggable(letter.reason, 500),
            **_with_shard(shard),
        },
    )
    flash(f"Requeued dead letter {letter.id} as queue entry {new_id}.", "ok")
    return redirect(url_for(".index", shard=shard or None), code=303)


@bp.route("/requeue-all", methods=["POST"])
def requeue_all() -> Response:
    moved = truncated = 0
    full = remaining = False
    shard = _shard()
    for chunk in dl.requeue_chunks(resources(), shard=shard):
        moved += len(chunk.moved)
        truncated += chunk.truncated
        full = full or chunk.queue_full
        remaining = remaining or chunk.remaining
        if chunk.moved:
            record(
                "auditq.dead_letter.requeue_all",
                target_type="dead_letter",
                metadata={
                    "count": len(chunk.moved),
                    "dead_letter_ids": [lt.id for lt, _ in chunk.moved],
                    "event_ids": [lt.event_id for lt, _ in chunk.moved if lt.event_id],
                    "queue_entry_ids": [nid for _, nid in chunk.moved],
                    **_with_shard(shard),
                },
            )
    kept = f" {truncated} truncated (inspect or discard them)." if truncated else ""
    if full:
        flash(f"Requeued {moved}. " + FULL + kept, "error")
    elif remaining:
        flash(f"Requeued {moved}; more remain — requeue all again to continue.{kept}", "warning")
    else:
        flash(f"Requeued {moved} dead letter{'s' if moved != 1 else ''}.{kept}", "ok")
    return redirect(url_for(".index", shard=shard or None), code=303)


@bp.route("/<entry_id>/discard", methods=["POST"])
def discard(entry_id: str) -> Response:
    shard = _shard()
    try:
        letter = dl.discard(resources(), entry_id, shard)
    except dl.NotFound:
        flash("That dead letter is gone (already requeued or discarded).", "warning")
        return redirect(url_for(".index", shard=shard or None), code=303)
    record(
        "auditq.dead_letter.discard",
        target_type="dead_letter",
        target_id=letter.id,
        metadata={
            "dead_letter_id": letter.id,
            "event_id": letter.event_id,
            "original_entry_id": letter.entry_id,
            "reason": _loggable(letter.reason, 500),
            # The discarded event is gone from Redis: keep what it was in the trail.
            "event": _loggable(letter.event_raw, DISCARDED_EVENT_CHARS),
            "event_bytes": letter.size,
            "event_truncated": letter.truncated or len(letter.event_raw) > DISCARDED_EVENT_CHARS,
            **_with_shard(shard),
        },
    )
    flash(f"Discarded dead letter {letter.id}.", "ok")
    return redirect(url_for(".index", shard=shard or None), code=303)


def _loggable(value: str, limit: int) -> str:
    """Dead-letter text for the audit log, which refuses NUL (it is stored as text)."""
    return value[:limit].replace("\x00", "\ufffd")
