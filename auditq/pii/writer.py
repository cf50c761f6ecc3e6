"""Encrypting personal fields just before a store insert: the one function every writer
(the worker, the clients' direct writes) passes its rows through.

The drain is the hot path: a batch asks the store for the keys of the subjects it has not
seen lately in one query (and creates the missing ones in one insert), and unwrapped data
keys stay in a bounded cache (auditq/pii/cache.py, AUDITQ_PII_CACHE_SIZE). A key cached
here outlives its erasure in this process until evicted or restarted: rows written
meanwhile are encrypted under the destroyed key, so they read as erased too (never in
clear).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import uuid_utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auditq.config import Settings
from auditq.events import COLUMN, Row
from auditq.pii import FORMAT, crypto, fields, subject_of
from auditq.pii.cache import KeyCache
from auditq.stores import Store, StoreUnavailable
from auditq.stores.encoding import dumps

Sealer = Callable[[Sequence[Row]], Sequence[Row]]
_ID, _ACTOR_ID, _PII = COLUMN["id"], COLUMN["actor_id"], COLUMN["pii"]


def as_is(rows: Sequence[Row]) -> Sequence[Row]:
    return rows


def sealer(settings: Settings, store: Store) -> Sealer:
    """What a writer passes its rows through before ``store.insert_rows``."""
    if settings.pii_key is None or not settings.pii_field_list:
        return as_is
    keys = crypto.masters(settings)
    return Encryptor(store, keys, settings.pii_field_list, settings.pii_cache_size).seal


class Encryptor:
    def __init__(
        self, store: Store, masters: list[AESGCM], names: Sequence[str], cache_size: int
    ) -> None:
        self.store = store
        self.masters = masters  # the first wraps new keys
        self.fields = fields.Fields(names)
        self._cache: KeyCache[tuple[str, AESGCM]] = KeyCache(cache_size)  # (key id, key)
        self._listed: dict[tuple[str, ...], str] = {}  # field names -> their part of pii

    def seal(self, rows: Sequence[Row]) -> Sequence[Row]:
        """The rows, their personal fields replaced by ``pii`` ciphertext (its JSON text),
        in place: a writer's rows are its own, made for this insert (a client's, from its
        events by ``events.event_row``, which leaves the events as they are).

        Raises StoreUnavailable when the keys cannot be read or created (a writer retries
        it like a failed insert; nothing is stored in clear meanwhile)."""
        # A row sealed already is skipped: sealing is idempotent.
        take = self.fields.take
        todo = [(row, taken) for row in rows if row[_PII] is None and (taken := take(row))[0]]
        if not todo:
            return rows
        subjects = [subject_of(row[_ACTOR_ID]) for row, _ in todo]
        keys = self._keys(set(subjects))  # before any row changes: a failure leaves them as is
        encrypt = crypto.encrypt
        nonces = crypto.nonces(len(todo))
        for (row, (found, updates)), subject, nonce in zip(todo, subjects, nonces, strict=True):
            key_id, data_key = keys[subject]
            ciphertext = encrypt(data_key, row[_ID], dumps(found), nonce)
            names = tuple(found)  # escaped for JSON once per set of names
            if (listed := self._listed.get(names)) is None:
                listed = self._listed[names] = dumps(",".join(names)).decode()[1:-1]
            for index, value in updates.items():
                row[index] = value
            # The ``pii`` column's JSON, as the row carries it to the store: one format per
            # row, no dict to build and then encode (the drain pays it on every row). The key
            # id is a UUID and the ciphertext base64: neither needs escaping.
            row[_PII] = f'{{"{FORMAT}":"{key_id},{ciphertext},{listed}"}}'
        return rows

    def _keys(self, subjects: set[str]) -> dict[str, tuple[str, AESGCM]]:
        keys = self._cache.get_many(subjects)
        missing = subjects - keys.keys()
        if missing:
            found = self._read(missing)
            if new := missing - found.keys():
                made = {subject: self._new_key(subject) for subject in sorted(new)}
                added = self.store.add_pii_keys([row for row, _ in made.values()])
                found |= {s: (made[s][0]["key_id"], made[s][1]) for s in added}
                # Read back the others: a writer racing on the same subject won the insert.
                if taken := new - added:
                    found |= self._read(taken)
            if lost := missing - found.keys():
                # Only if a key was erased between the insert and the read back.
                raise StoreUnavailable(f"pii: no data key for {len(lost)} subject(s) yet")
            keys |= found
            self._cache.put_many(found)
        return keys

    def _read(self, subjects: set[str]) -> dict[str, tuple[str, AESGCM]]:
        out = {}
        for row in self.store.pii_keys(subjects=sorted(subjects)):
            try:
                key = crypto.unwrap(self.masters, row["key_id"], row["wrapped"])
            except crypto.Undecryptable:
                # A wrong AUDITQ_PII_KEY: hold the rows back (retried) rather than store
                # them under a key nobody could unwrap, or in clear.
                raise StoreUnavailable(
                    "pii: a data key does not unwrap with AUDITQ_PII_KEY (wrong key?)"
                ) from None
            out[row["subject"]] = (row["key_id"], key)
        return out

    def _new_key(self, subject: str) -> tuple[dict[str, str], AESGCM]:
        """A new data key: its row for the store, and the key itself."""
        # uuid-utils' uuid4 (Rust, the OS's random source): a tenth of the stdlib's cost.
        key_id, data_key = str(uuid_utils.uuid4()), crypto.new_data_key()
        row = {"subject": subject, "key_id": key_id,
               "wrapped": crypto.wrap(self.masters[0], key_id, data_key)}  # fmt: skip
        return row, AESGCM(data_key)
