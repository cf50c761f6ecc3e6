"""Plain helpers of the personal-data tests."""

import base64
import os

import orjson

from auditq.events import event_row
from auditq.pii import unpack

KEY = base64.b64encode(os.urandom(32)).decode()  # AUDITQ_PII_KEY for the whole session


def rows_of(events):
    """The events as a writer's rows (``events.event_row``)."""
    return [event_row(event, "queue") for event in events]


def in_first_format(pii_text):
    """A row's pii JSON text rewritten in format 1, the same ciphertext: the object writers
    stored before format 2, which readers still read."""
    sealed = unpack(orjson.loads(pii_text))
    old = {"v": 1, "k": sealed.key_id, "f": sealed.names, "c": sealed.ciphertext}
    return orjson.dumps(old).decode()
