"""Plain helpers of the personal-data tests."""

import base64
import os

from auditq.events import event_row

KEY = base64.b64encode(os.urandom(32)).decode()  # AUDITQ_PII_KEY for the whole session


def rows_of(events):
    """The events as a writer's rows (``events.event_row``)."""
    return [event_row(event, "queue") for event in events]
