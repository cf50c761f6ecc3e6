"""Login and logout. The password is compared in constant time; attempts are rate-limited
per client IP (``dashboard.ratelimit``). Which password matched decides the role."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from dashboard.access import any_role_may_post, current_role, public, safe_next, start_session
from dashboard.ratelimit import LOGIN_LIMIT, LOGIN_WINDOW, FixedWindow
from dashboard.resources import resources

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)


def _limiter() -> FixedWindow:
    res = resources()
    limiter = getattr(res, "_login_limiter", None)
    if limiter is None:
        limiter = res._login_limiter = FixedWindow(  # type: ignore[attr-defined]
            res.redis, res.keys.prefix, LOGIN_LIMIT, LOGIN_WINDOW
        )
    return limiter


def _matches(given: str, secret) -> bool:
    if secret is None or not secret.get_secret_value():
        # Compare anyway so the time taken does not say whether a viewer password exists.
        hmac.compare_digest(given.encode(), b"\0" * 32)
        return False
    return hmac.compare_digest(given.encode(), secret.get_secret_value().encode())


def _next_url() -> str:
    target = safe_next(request.values.get("next"))
    if target is None:
        return url_for("overview.index")
    return request.script_root + target


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Response | str | tuple[str, int]:
    if request.method == "GET":
        if current_role():
            return redirect(_next_url(), code=303)
        return render_template("login.html", next=safe_next(request.args.get("next")))

    if not _limiter().hit(request.remote_addr or "unknown"):
        log.warning("login rate limit hit ip=%s", request.remote_addr)
        message = f"Too many login attempts. Try again in {LOGIN_WINDOW // 60} minutes."
        return render_template("login.html", error=message, next=None), 429
    settings = resources().settings
    password = request.form.get("password", "")
    is_admin = _matches(password, settings.dashboard_password)
    is_viewer = _matches(password, settings.dashboard_viewer_password)
    if not (is_admin or is_viewer):
        log.info("login failed ip=%s", request.remote_addr)
        return render_template(
            "login.html", error="Wrong password.", next=safe_next(request.form.get("next"))
        ), 401
    start_session("admin" if is_admin else "viewer")
    log.info("login ok role=%s ip=%s", session["role"], request.remote_addr)
    return redirect(_next_url(), code=303)


@bp.route("/logout", methods=["POST"])
@any_role_may_post
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.login"), code=303)
