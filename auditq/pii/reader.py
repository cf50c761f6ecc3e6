"""Putting personal fields back into rows read from the store, as the reader may see them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Literal
from uuid import UUID

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auditq.config import Settings
from auditq.pii import ENCRYPTED, ERASED, HIDDEN, crypto, fields, unpack
from auditq.stores import Store

Show = Literal["clear", "hidden"]


def reveal(rows: list[dict[str, Any]], store: Store, settings: Settings, show: Show) -> None:
    """Replace each row's ``pii`` by the fields it holds, in place: decrypted (``clear``),
    or ``[hidden]``; ``[erased]`` when the subject's key was destroyed, ``[encrypted]``
    when this process has no AUDITQ_PII_KEY. The data keys are read for each call, never
    cached, so an erasure shows at once."""
    pending = [(row, unpack(pii)) for row in rows if (pii := row.pop("pii", None))]
    if not pending:
        return
    if show == "hidden" or settings.pii_key is None:
        mark = HIDDEN if show == "hidden" else ENCRYPTED
        for row, sealed in pending:
            fields.put(row, dict.fromkeys(sealed.names, mark))
        return
    keys = _data_keys(store, crypto.masters(settings), {s.key_id for _, s in pending})
    for row, sealed in pending:
        values = dict.fromkeys(sealed.names, ERASED)
        if (key := keys.get(sealed.key_id)) is not None:
            # Not this row's ciphertext (copied from another row): unreadable, as if erased.
            with contextlib.suppress(crypto.Undecryptable, orjson.JSONDecodeError):
                values = orjson.loads(crypto.decrypt(key, UUID(str(row["id"])), sealed.ciphertext))
        fields.put(row, values)


def _data_keys(store: Store, masters: list[AESGCM], key_ids: Iterable[str]) -> dict[str, AESGCM]:
    keys = {}
    for row in store.pii_keys(key_ids=sorted(key_ids)):
        try:
            keys[row["key_id"]] = crypto.unwrap(masters, row["key_id"], row["wrapped"])
        except crypto.Undecryptable:
            continue  # wrapped under another AUDITQ_PII_KEY: unreadable here
    return keys
