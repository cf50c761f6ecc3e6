"""Personal fields encrypted per subject, and erasure that keeps the seals valid.

With AUDITQ_PII_KEY set, the fields named by AUDITQ_PII_FIELDS (``ip``, ``user_agent``,
``metadata.<key>``) never reach ``audit_logs`` in clear. Just before a store insert, on
every path that inserts (the worker's drain and reclaim, the clients' direct writes of
critical events), ``writer.sealer`` moves them out of the row into its ``pii`` column:

    pii = {"v2": "<data key id>,<base64(nonce || ciphertext)>,<field name>,<field name>..."}

(a sealed event carries it as that JSON's text: the postgres store's COPY writes it as it
is, the supabase store sends the object it stands for; no dict per row, nor its encoding.)
One key, its value one string: jsonb spends its time on an object's keys and arrays, not on
a string's bytes. Postgres reads the format written before, ``{"v": 1, "k": <data key id>,
"f": [field names], "c": <base64>}``, as jsonb in three times the time (1.9 against 0.6 us
a value), which is about 1 us of every encrypted row's insert (bench/RESULTS.md, "The pii
column's type"). Field names hold no comma (they come from the comma-separated
AUDITQ_PII_FIELDS); key ids and base64 hold none either. Readers read both formats
(``unpack``); rows already stored keep theirs, and the seals that cover them.

The ciphertext is AES-256-GCM of the fields' JSON under the subject's data key, with the
row id as associated data (a ciphertext copied onto another row does not decrypt). The
subject is the event's ``actor_id`` (events without one share the subject ``""``). Each
subject's data key is random, and stored only wrapped (AES-256-GCM under AUDITQ_PII_KEY,
its key id as associated data) in ``audit_pii_keys``, which only the service role reads.

Readers (the explorer, its exports, ``GET /api/v1/events``) put the fields back with
``reader.reveal``: decrypted for authorised readers, ``[hidden]`` for the dashboard's viewer
role unless AUDITQ_PII_VIEWER_CLEAR, ``[erased]`` once the subject's key is gone.

Erasure (``erase.erase_subject``) deletes the subject's key row: their rows stay, with
every other column in clear; the ciphertext stays too and is what the seals hash
(auditq/seals/canonical.py), so ``verify`` still passes, but nobody can read it again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

ERASED = "[erased]"  # the subject's data key was destroyed
HIDDEN = "[hidden]"  # this reader may not see personal fields
ENCRYPTED = "[encrypted]"  # this process has no AUDITQ_PII_KEY to decrypt with
FORMAT = "v2"  # the key of pii's one-key object


class Sealed(NamedTuple):
    """What a row's ``pii`` holds: the data key's id, the field names, the ciphertext."""

    key_id: str
    names: list[str]
    ciphertext: str


def unpack(pii: dict[str, Any]) -> Sealed:
    """A ``pii`` object as the store reads it (a dict), in either format."""
    if (packed := pii.get(FORMAT)) is not None:
        key_id, ciphertext, *names = packed.split(",")
        return Sealed(key_id, names, ciphertext)
    return Sealed(pii["k"], pii["f"], pii["c"])  # format 1, stored before format 2


def subject_of(actor_id: str | None) -> str:
    """Whose data key encrypts an event's personal fields."""
    return actor_id or ""
