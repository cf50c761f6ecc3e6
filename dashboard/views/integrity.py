"""Integrity: the seal head, the last seal pass, the unsealed backlog, the last verify with
its findings, "Verify now" (admin, CSRF, runs in the background), and the hourly
reconciliation of the queue's counters.

``/integrity`` renders the page; asked by htmx it renders ``partials/integrity_live.html``.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from dashboard.audit import record
from dashboard.ext import htmx
from dashboard.integrity import snapshot, start_verify
from dashboard.resources import resources

bp = Blueprint("integrity", __name__, url_prefix="/integrity")


@bp.route("/")
def index() -> str:
    snap = snapshot(resources())
    if htmx:
        return render_template("partials/integrity_live.html", snap=snap)
    return render_template("integrity.html", snap=snap)


@bp.route("/verify", methods=["POST"])
def verify_now() -> Response:
    if start_verify(resources()):
        record("auditq.integrity.verify", target_type="audit_seals")
        flash("Verify started; the result appears below when it is done.", "ok")
    else:
        flash("A verify is already running.", "warning")
    return redirect(url_for("integrity.index"), code=303)
