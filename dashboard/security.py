"""Response headers, the session cookie's Secure flag, and error pages.

Content-Security-Policy allows scripts and styles from this origin only: no inline script,
no inline style attributes, no eval (htmx is configured not to need it).
"""

from __future__ import annotations

import ipaddress

import redis
from flask import Flask, Request, Response, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def is_local_http(req: Request) -> bool:
    """Plain http to a loopback host: a developer's machine, where a Secure cookie would
    never come back. Behind Heroku's router ProxyFix has made the scheme https."""
    if req.scheme == "https":
        return False
    host = (req.host or "").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with Secure set unless on plain-http localhost.

    Anything else on plain http gets a Secure cookie the browser will not send back: login
    then fails visibly instead of a session riding over an unencrypted connection.
    """

    def get_cookie_secure(self, app: Flask) -> bool:
        return not is_local_http(request)


def add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    response.vary.add("HX-Request")  # a page and its htmx fragment share a URL
    if request.scheme == "https":
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint != "static" and not (request.endpoint or "").endswith(".static"):
        # Pages hold audit data: keep them out of shared and browser caches.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def wants_json() -> bool:
    """API, metrics and health callers get JSON errors; people get pages and redirects.

    Decided by the path when no route matched (a 404 or 405 has no blueprint)."""
    blueprint = request.blueprint or ""
    if blueprint.startswith("api") or blueprint in ("metrics", "health"):
        return True
    return request.endpoint is None and request.path.startswith(("/api/", "/metrics"))


def handle_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    message = error.description or error.name
    if isinstance(error, CSRFError):
        message = "The form expired or was not sent from this dashboard; reload and retry."
    if wants_json():
        response = jsonify({"error": message})
    else:
        response = Response(render_template("error.html", status=status, message=message))
    response.status_code = status
    # The exception's own headers (a 405's Allow, a 401's WWW-Authenticate), our body.
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_redis_error(error: redis.RedisError) -> tuple[Response | str, int]:
    message = f"Redis is unreachable ({type(error).__name__}). Reload to see the current state."
    if wants_json():
        return jsonify({"error": message}), 503
    return render_template("error.html", status=503, message=message), 503


def init_app(app: Flask) -> None:
    app.after_request(add_headers)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(redis.RedisError, handle_redis_error)
