"""Serving the dashboard under a path prefix (``AUDITQ_URL_PREFIX``, e.g. ``/ops``).

A request for ``/ops/workers`` reaches the app as SCRIPT_NAME ``/ops`` and PATH_INFO
``/workers``, so ``url_for`` builds prefixed URLs and the session cookie's path is the
prefix. A server that already put the prefix in SCRIPT_NAME (gunicorn's ``SCRIPT_NAME``
environment variable) is left alone; any other path is 404.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class PrefixMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]], prefix: str):
        self.app = app
        self.prefix = prefix.rstrip("/")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        script = environ.get("SCRIPT_NAME", "").rstrip("/")
        path = environ.get("PATH_INFO", "") or "/"
        if script == self.prefix:
            return self.app(environ, start_response)
        if path == self.prefix or path.startswith(self.prefix + "/"):
            environ["SCRIPT_NAME"] = script + self.prefix
            environ["PATH_INFO"] = path[len(self.prefix) :] or "/"
            return self.app(environ, start_response)
        body = b"not found: this dashboard is served under " + self.prefix.encode() + b"/\n"
        start_response(
            "404 Not Found",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]
