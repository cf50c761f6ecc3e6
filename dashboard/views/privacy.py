"""Privacy: erase a subject's personal fields (GDPR art. 17) from the dashboard.

Admins only, also to look at. The POST is CSRF-checked by the access hook and asks for the
actor id twice (a confirmation that a mistyped id cannot pass), then destroys the actor's
data key (auditq/pii): their events stay, their personal fields read as erased everywhere.
Recorded as a critical audit event naming who erased which subject, none of their data.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from auditq.pii.erase import ERASE_ACTION, SUBJECT, erase_subject
from auditq.stores import StoreError
from dashboard.access import admin_only
from dashboard.audit import record
from dashboard.resources import resources

bp = Blueprint("privacy", __name__, url_prefix="/privacy")
MAX_ACTOR = 256  # actor_id's own bound (auditq/events.py)


@bp.route("/")
@admin_only
def index() -> str:
    settings = resources().settings
    return render_template(
        "privacy.html", encrypted=settings.pii_key is not None, fields=settings.pii_field_list
    )


@bp.route("/erase", methods=["POST"])
def erase() -> Response:
    actor = request.form.get("actor_id", "").strip()
    if not actor or len(actor) > MAX_ACTOR or "\x00" in actor:
        flash(f"Give the actor id to erase (1 to {MAX_ACTOR} characters).", "error")
        return redirect(url_for(".index"), code=303)
    if request.form.get("confirm", "").strip() != actor:
        flash("The confirmation does not match the actor id: nothing was erased.", "error")
        return redirect(url_for(".index"), code=303)
    store = resources().store
    if store is None:
        flash("No store is configured (SUPABASE_URL or DATABASE_URL).", "error")
        return redirect(url_for(".index"), code=303)
    try:
        erased = erase_subject(store, actor)
    except StoreError as error:
        flash(f"The store did not answer: {error}. Nothing was erased.", "error")
        return redirect(url_for(".index"), code=303)
    if not erased:
        flash(f"No personal data key for actor {actor!r} (unknown, or erased already).", "warning")
        return redirect(url_for(".index"), code=303)
    record(ERASE_ACTION, target_type=SUBJECT, target_id=actor)
    flash(f"Erased the personal fields of actor {actor!r}; their events stay.", "ok")
    return redirect(url_for(".index"), code=303)
