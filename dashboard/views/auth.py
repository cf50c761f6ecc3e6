"""Login and logout. The password is compared in constant time; attempts are limited per
client address and failures per login (``dashboard.ratelimit``). Which password matched
decides the role."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from dashboard.access import (
    Role,
    any_role_may_post,
    current_role,
    end_session,
    public,
    safe_next,
    start_session,
)
from dashboard.ratelimit import LOGIN_WINDOW, LoginLimits
from dashboard.resources import resources

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)
EXTENSION = "auditq_login_limits"
TOO_MANY = f"Too many login attempts. Try again in {LOGIN_WINDOW // 60} minutes."


def _limits() -> LoginLimits:
    extensions = current_app.extensions
    if EXTENSION not in extensions:  # a race makes two, both counting in the same keys
        res = resources()
        extensions[EXTENSION] = LoginLimits.on(res.redis, res.keys)
    return extensions[EXTENSION]


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

    limits = _limits()
    if not limits.per_ip.hit(f"ip:{request.remote_addr}"):
        log.warning("login rate limit hit ip=%s", request.remote_addr)
        return render_template("login.html", error=TOO_MANY, next=None), 429
    settings = resources().settings
    password = request.form.get("password", "")
    matched: list[Role] = []
    if _matches(password, settings.dashboard_password):
        matched.append("admin")
    if _matches(password, settings.dashboard_viewer_password):
        matched.append("viewer")
    logins: list[Role] = ["admin"]
    if settings.dashboard_viewer_password is not None:
        logins.append("viewer")
    locked = [role for role in logins if limits.per_login.exhausted(f"login:{role}")]
    open_match = [role for role in matched if role not in locked]
    if not open_match:
        # A failure is a guess at every login (the form has no user name). A locked login
        # answers 429 even to its right password, so a guess learns nothing from it.
        for role in logins:
            if role not in locked:
                limits.per_login.hit(f"login:{role}")
        if locked:
            log.warning("login locked roles=%s ip=%s", ",".join(locked), request.remote_addr)
            return render_template("login.html", error=TOO_MANY, next=None), 429
        log.info("login failed ip=%s", request.remote_addr)
        return render_template(
            "login.html", error="Wrong password.", next=safe_next(request.form.get("next"))
        ), 401
    start_session(open_match[0])  # admin first: when both match, admin wins
    log.info("login ok role=%s ip=%s", session["role"], request.remote_addr)
    return redirect(_next_url(), code=303)


@bp.route("/logout", methods=["POST"])
@any_role_may_post
def logout() -> Response:
    end_session()
    return redirect(url_for("auth.login"), code=303)
