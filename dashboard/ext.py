"""Flask extension objects shared by the blueprints (bound to the app in ``create_app``)."""

from __future__ import annotations

from flask_htmx import HTMX

htmx = HTMX()  # truthy inside a request that htmx made (HX-Request: true)
