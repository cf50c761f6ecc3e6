"""Rotating AUDITQ_PII_KEY: rewrap every data key under the new key (the data keys, and so
every stored ciphertext and every seal, stay as they are).

Steps: set AUDITQ_PII_OLD_KEY to the current key and AUDITQ_PII_KEY to a new one on every
process (readers and writers unwrap with either meanwhile), run ``python -m auditq
pii-rewrap``, then unset AUDITQ_PII_OLD_KEY.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditq.config import Settings
from auditq.pii import crypto
from auditq.stores import Store

PAGE = 500


@dataclass
class Rewrapped:
    rewrapped: int = 0
    current: int = 0  # wrapped under the new key already
    unreadable: int = 0  # under neither key: left as they are


def rewrap_all(store: Store, settings: Settings) -> Rewrapped:
    new, *old = crypto.masters(settings)
    counts = Rewrapped()
    after: str | None = None
    while rows := store.pii_key_page(after, PAGE):
        for row in rows:
            key_id, wrapped = row["key_id"], row["wrapped"]
            try:
                crypto.unwrap_bytes([new], key_id, wrapped)
                counts.current += 1
                continue
            except crypto.Undecryptable:
                pass
            try:
                data_key = crypto.unwrap_bytes(old, key_id, wrapped)
            except crypto.Undecryptable:
                counts.unreadable += 1
                continue
            store.rewrap_pii_key(key_id, crypto.wrap(new, key_id, data_key))
            counts.rewrapped += 1
        after = rows[-1]["subject"]
    return counts
