"""The ops dashboard: a Flask app factory, served by ``gunicorn "dashboard:create_app()"``.

Pages live in ``dashboard/views/`` (HTML; full pages plus the fragments htmx swaps), JSON
in ``dashboard/api/``, ``/metrics`` in ``dashboard/metrics.py`` and ``/healthz`` in
``dashboard/health.py``. Every request passes one access hook (``dashboard.access``):
login, roles, bearer tokens and CSRF are decided there and nowhere else.

To add a blueprint, import its module in ``register_blueprints`` below and register its
``bp``; to put a page in the navigation bar, list it in ``dashboard.nav.NAV``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from auditq.config import ConfigError, Settings, load_settings
from dashboard import access, security, templating
from dashboard.ext import htmx
from dashboard.resources import Resources
from dashboard.sessions import SESSION_LIFETIME
from dashboard.urlprefix import PrefixMiddleware

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app. Refuses to start (ConfigError) without SECRET_KEY or DASHBOARD_PASSWORD."""
    settings = settings if settings is not None else load_settings()
    _check(settings)

    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    assert settings.secret_key is not None
    app.config.update(
        SECRET_KEY=settings.secret_key.get_secret_value(),
        APPLICATION_ROOT=settings.url_prefix or "/",
        SESSION_COOKIE_NAME="auditq_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # CSRF is checked by the access hook itself (after login and role checks), so the
        # order of the checks is in one place; bearer-token routes do not use cookies.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # valid as long as the session (SESSION_LIFETIME)
        MAX_CONTENT_LENGTH=1_048_576,  # form posts; the ingest API sets its own cap
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.session_interface = security.SessionInterface()
    app.extensions["auditq"] = Resources(settings)
    htmx.init_app(app)
    security.init_app(app)
    templating.init_app(app)

    register_blueprints(app)
    access.init_app(app)  # after the blueprints: it checks every endpoint declares access

    # The alert evaluator runs in web processes too, so alerts still work with every worker
    # dead; leases let one process evaluate at a time (auditq/alerts/lease.py).
    if settings.alerts_in_web:
        from auditq.alerts.evaluator import start_background

        app.extensions["auditq_alerts_scheduler"] = start_background(settings)

    # Only hops known to be there (AUDITQ_TRUSTED_PROXIES, or Heroku's router): anywhere
    # else a client could choose its own address (and dodge the login limit).
    hops = settings.proxy_hops
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_port=hops)  # type: ignore[method-assign]
    if settings.url_prefix:
        app.wsgi_app = PrefixMiddleware(app.wsgi_app, settings.url_prefix)  # type: ignore[method-assign]
    return app


def register_blueprints(app: Flask) -> None:
    """Every blueprint the app serves. Imported here, as Flask's tutorial does, so importing
    the package does not import every view."""
    from dashboard import health, metrics
    from dashboard.api import alerts as alerts_api
    from dashboard.api import events as events_api
    from dashboard.api import integrity as integrity_api
    from dashboard.api import stats as stats_api
    from dashboard.views import (
        alerts,
        auth,
        dead_letters,
        explorer,
        integrity,
        overview,
        privacy,
        retention,
        settings,
        workers,
    )

    for blueprint in (
        auth.bp,
        overview.bp,
        workers.bp,
        dead_letters.bp,
        explorer.bp,
        settings.bp,
        privacy.bp,  # erasure (auditq/pii)
        stats_api.bp,
        events_api.bp,
        alerts.bp,
        alerts_api.bp,
        metrics.bp,
        health.bp,
        integrity.bp,
        integrity_api.bp,
        retention.bp,
    ):
        app.register_blueprint(blueprint)


def _check(settings: Settings) -> None:
    missing = [
        name
        for name, value in (
            ("SECRET_KEY", settings.secret_key),
            ("DASHBOARD_PASSWORD", settings.dashboard_password),
        )
        if value is None or not value.get_secret_value()
    ]
    if missing:
        raise ConfigError(
            f"the dashboard refuses to start without {' and '.join(missing)}"
            " (set it in the environment; `python -m auditq dev` generates both)"
        )
    if len(settings.secret_key.get_secret_value()) < 16:  # type: ignore[union-attr]
        raise ConfigError("SECRET_KEY: must be at least 16 characters")
