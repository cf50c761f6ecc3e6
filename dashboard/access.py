"""Who may call what: one ``before_request`` hook decides for every request.

The default for every endpoint is: a logged-in session; GET/HEAD/OPTIONS for any role;
any other method for the ``admin`` role only, with a valid CSRF token. A view changes that
only by declaring it with one of these decorators (put them under ``@bp.route``):

- ``@public``: no login (``/healthz``, the login page); a POST still needs a CSRF token.
  Static files are public too.
- ``@bearer("metrics_token")``: an ``Authorization: Bearer`` header matching that setting
  (constant-time compare); no cookies are used, so no CSRF. ``session_ok=True`` also lets
  a logged-in session in (then the normal rules, CSRF included, apply).
- ``@admin_only``: even GET needs the admin role.
- ``@any_role_may_post``: a viewer may POST here too (logout). CSRF still applies.

``init_app`` refuses to start an app with an endpoint that declares two of these.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from flask import Flask, current_app, g, jsonify, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response

from dashboard.resources import resources
from dashboard.security import wants_json
from dashboard.sessions import Revocations, new_session_id

F = TypeVar("F", bound=Callable[..., Any])
Role = Literal["admin", "viewer"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ATTRIBUTE = "_auditq_access"

csrf = CSRFProtect()
REVOCATIONS = "auditq_session_revocations"


@dataclass(frozen=True)
class Access:
    kind: Literal["session", "public", "bearer"] = "session"
    token_setting: str | None = None  # bearer: the Settings field holding the token
    session_ok: bool = False  # bearer: a logged-in session is accepted as well
    admin_only: bool = False
    viewer_may_post: bool = False


DEFAULT = Access()


def _declare(func: F, access: Access) -> F:
    if hasattr(func, ATTRIBUTE):
        raise TypeError(f"{func.__name__}: access declared twice")
    setattr(func, ATTRIBUTE, access)
    return func


def public(func: F) -> F:
    return _declare(func, Access(kind="public"))


def bearer(token_setting: str, *, session_ok: bool = False) -> Callable[[F], F]:
    def wrap(func: F) -> F:
        return _declare(
            func, Access(kind="bearer", token_setting=token_setting, session_ok=session_ok)
        )

    return wrap


def admin_only(func: F) -> F:
    return _declare(func, Access(admin_only=True))


def any_role_may_post(func: F) -> F:
    return _declare(func, Access(viewer_may_post=True))


def access_of(endpoint: str | None) -> Access:
    if endpoint is None:
        return DEFAULT
    if endpoint == "static" or endpoint.endswith(".static"):
        return Access(kind="public")
    view = current_app.view_functions.get(endpoint)
    return getattr(view, ATTRIBUTE, DEFAULT)


# --- the session --------------------------------------------------------------------------


def password_fingerprint(role: Role) -> str:
    """Ties a session to the password it was made with: changing a password logs out its
    sessions. An HMAC under SECRET_KEY, so the cookie reveals nothing about the password."""
    settings = resources().settings
    secret = settings.dashboard_password if role == "admin" else settings.dashboard_viewer_password
    if secret is None:
        return ""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, secret.get_secret_value().encode(), hashlib.sha256).hexdigest()[:32]


def current_role() -> Role | None:
    role = session.get("role")
    if role not in ("admin", "viewer"):
        return None
    if not hmac.compare_digest(session.get("pw", ""), password_fingerprint(role)):
        return None  # made with a password that has changed since
    sid = session.get("sid")
    if not isinstance(sid, str) or _revocations().is_revoked(sid):
        return None  # logged out (a copy of the cookie from before logout)
    return role


def start_session(role: Role) -> None:
    session.clear()
    session.permanent = True
    session["role"] = role
    session["pw"] = password_fingerprint(role)
    session["sid"] = new_session_id()


def end_session() -> None:
    """Logout: this cookie, and every copy of it, stops working."""
    sid = session.get("sid")
    if isinstance(sid, str):
        _revocations().revoke(sid)
    session.clear()


def _revocations() -> Revocations:
    return current_app.extensions[REVOCATIONS]


# --- the hook -----------------------------------------------------------------------------


def check_request() -> Response | None:
    """The one access decision. Returns a refusal, or None to let the view run."""
    g.role = None
    if request.routing_exception is not None and wants_json():
        # No route matched (404, or 405 such as DELETE /api/v1/events): nothing runs, so the
        # caller gets the JSON error rather than a redirect to the HTML login.
        return None
    access = access_of(request.endpoint)
    if access.kind == "public":
        if request.method not in SAFE_METHODS:
            csrf.protect()  # the login form: a forged login would plant a session
        return None

    if access.kind == "bearer":
        if _token_matches(access.token_setting):
            return None  # no cookie involved: nothing to forge, so no CSRF
        if not (access.session_ok and current_role()):
            return _json_error(401, "a valid bearer token is required", bearer=True)

    role = current_role()
    if role is None:
        return _login_required()
    g.role = role
    if request.method in SAFE_METHODS:
        if access.admin_only and role != "admin":
            return _forbidden()
        return None
    if role != "admin" and not access.viewer_may_post:
        return _forbidden()
    csrf.protect()  # raises CSRFError (400) without a valid token
    return None


def _token_matches(setting: str | None) -> bool:
    if setting is None:
        return False
    expected = getattr(resources().settings, setting)
    if expected is None or not expected.get_secret_value():
        return False  # an unset token disables the route; it never matches "Bearer "
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.get_secret_value().encode())


def _json_error(status: int, message: str, *, bearer: bool = False) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    if bearer:
        response.headers["WWW-Authenticate"] = 'Bearer realm="auditq"'
    return response


def _login_required() -> Response:
    if wants_json():
        return _json_error(401, "login required")
    back = request.full_path if request.method in SAFE_METHODS else None
    target = url_for("auth.login", next=safe_next(back))
    if request.headers.get("HX-Request"):
        # htmx would swap a redirect's page into the fragment; send the whole tab instead.
        response = Response("login required", status=401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, code=303)


def _forbidden() -> Response:
    if wants_json():
        return _json_error(403, "the viewer role is read-only")
    from flask import render_template

    return Response(
        render_template("error.html", status=403, message="The viewer role is read-only."),
        status=403,
    )


def safe_next(target: str | None) -> str | None:
    """A same-app relative path to return to after login, or None (no open redirects)."""
    if not target:
        return None
    target = target.rstrip("?")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(c) < 32 for c in target):
        return None
    return quote(target, safe="/?&=%:.-_~+,;@!$'()*")


def init_app(app: Flask) -> None:
    csrf.init_app(app)
    res = app.extensions["auditq"]
    app.extensions[REVOCATIONS] = Revocations(res.redis, res.keys)
    app.before_request(check_request)
    # An endpoint carries at most one declaration (enforced by _declare); make sure every
    # declared bearer setting exists, so a typo fails at start and not as a 401 forever.
    fields = type(app.extensions["auditq"].settings).model_fields
    for endpoint, view in app.view_functions.items():
        access = getattr(view, ATTRIBUTE, None)
        if access is not None and access.kind == "bearer" and access.token_setting not in fields:
            raise RuntimeError(f"{endpoint}: unknown token setting {access.token_setting!r}")
