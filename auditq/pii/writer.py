"""Encrypting personal fields just before a store insert: the one function every writer
(the worker, the clients' direct writes) passes its rows through.

The drain is the hot path: a batch asks the store for the keys of the subjects it has not
seen lately in one query (and creates the missing ones in one insert), and unwrapped data
keys stay in a bounded cache (auditq/pii/cache.py, AUDITQ_PII_CACHE_SIZE). A key cached
here outlives its erasure in this process until evicted or restarted: rows written
meanwhile are encrypted under the destroyed key, so they read as erased too (never in
clear).

Rows are sealed in C (native/auditq_pii.c, built by ``pip install -r requirements.txt``)
when every personal value is a str in a column or at the top of metadata (most events):
the Python loop around each row's cipher call cost the drain more than the cipher did. The
other rows, and every row where the module could not be built, take the Python path below,
which writes the same format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

import uuid_utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auditq.config import Settings
from auditq.events import COLUMN, Row
from auditq.pii import FORMAT, crypto, fields, subject_of
from auditq.pii.cache import KeyCache
from auditq.stores import Store, StoreUnavailable
from auditq.stores.encoding import dumps

try:
    import auditq_pii as native
except ImportError:  # not built (no compiler or OpenSSL headers at install): Python only
    native = None

log = logging.getLogger(__name__)
Sealer = Callable[[Sequence[Row]], Sequence[Row]]
_ID, _ACTOR_ID, _PII = COLUMN["id"], COLUMN["actor_id"], COLUMN["pii"]
_METADATA = COLUMN["metadata"]


def as_is(rows: Sequence[Row]) -> Sequence[Row]:
    return rows


def sealer(settings: Settings, store: Store) -> Sealer:
    """What a writer passes its rows through before ``store.insert_rows``."""
    if settings.pii_key is None or not settings.pii_field_list:
        return as_is
    if native is None:
        log.warning("pii: native/auditq_pii is not built: encrypting in Python (slower)")
    keys = crypto.masters(settings)
    return Encryptor(store, keys, settings.pii_field_list, settings.pii_cache_size).seal


def native_spec(names: Sequence[str]) -> tuple:
    """The field set as native/auditq_pii.c reads it (its ``Spec``): the columns, the
    metadata keys one level deep it takes, and the first keys of deeper paths (a row
    holding one is the Python path's)."""
    parsed = fields.Fields(names)
    deep = {path[0] for _, path in parsed.paths if len(path) > 1}
    flat = [(name, path[0]) for name, path in parsed.paths if len(path) == 1]
    escaped = {name: dumps(name)[1:-1] for name in names}  # JSON-escaped, no quotes
    return (
        _ID, _ACTOR_ID, _PII, _METADATA,
        tuple((escaped[name], index) for name, index in parsed.columns),
        # A key that is also a deeper path's head is left to Python (it is in ``deep``).
        tuple((escaped[name], key) for name, key in flat if key not in deep),
        tuple(deep),
        crypto.ROW_AAD, f'{{"{FORMAT}":"'.encode(),
    )  # fmt: skip


class DataKey(NamedTuple):
    id: str
    raw: bytes  # what native/auditq_pii.c encrypts with (it reads the first two fields)
    # What the Python path encrypts with: made once with the key where every row takes that
    # path, else for each row that does (few), not for every key (0.9 us each).
    aead: AESGCM | None

    @classmethod
    def of(cls, key_id: str, raw: bytes) -> DataKey:
        return cls(key_id, raw, AESGCM(raw) if native is None else None)


class Encryptor:
    def __init__(
        self, store: Store, masters: list[AESGCM], names: Sequence[str], cache_size: int
    ) -> None:
        self.store = store
        self.masters = masters  # the first wraps new keys
        self.fields = fields.Fields(names)
        self._cache: KeyCache[DataKey] = KeyCache(cache_size)
        self._listed: dict[tuple[str, ...], str] = {}  # field names -> their part of pii
        self._spec = native_spec(names)

    def seal(self, rows: Sequence[Row]) -> Sequence[Row]:
        """The rows, their personal fields replaced by ``pii`` ciphertext (its JSON text),
        in place: a writer's rows are its own, made for this insert (a client's, from its
        events by ``events.event_row``, which leaves the events as they are).

        Raises StoreUnavailable when the keys cannot be read or created (a writer retries
        it like a failed insert; nothing is stored in clear meanwhile)."""
        # A row sealed already is in neither list: sealing is idempotent.
        fast: list[Row] = []
        slow, fast_subjects = rows, set()
        if native is not None:
            rows = rows if isinstance(rows, list) else list(rows)
            fast, slow, fast_subjects = native.split(rows, self._spec)
        take = self.fields.take
        todo = [(row, taken) for row in slow if row[_PII] is None and (taken := take(row))[0]]
        if not fast and not todo:
            return rows
        subjects = [subject_of(row[_ACTOR_ID]) for row, _ in todo]
        # Before any row changes: a failure leaves them as they are.
        keys = self._keys(fast_subjects.union(subjects))
        if fast and (left := native.seal(fast, keys, self._spec)):
            # A value the C path does not take after all (not valid UTF-8): Python's turn.
            todo += [(row, taken) for row in left if (taken := take(row))[0]]
            subjects += [subject_of(row[_ACTOR_ID]) for row in left]
        encrypt = crypto.encrypt
        nonces = crypto.nonces(len(todo))
        for (row, (found, updates)), subject, nonce in zip(todo, subjects, nonces, strict=True):
            aead = keys[subject].aead or AESGCM(keys[subject].raw)
            ciphertext = encrypt(aead, row[_ID], dumps(found), nonce)
            names = tuple(found)  # escaped for JSON once per set of names
            if (listed := self._listed.get(names)) is None:
                listed = self._listed[names] = dumps(",".join(names)).decode()[1:-1]
            for index, value in updates.items():
                row[index] = value
            # The ``pii`` column's JSON, as the row carries it to the store: one format per
            # row, no dict to build and then encode (the drain pays it on every row). The key
            # id is a UUID and the ciphertext base64: neither needs escaping.
            row[_PII] = f'{{"{FORMAT}":"{keys[subject].id},{ciphertext},{listed}"}}'
        return rows

    def _keys(self, subjects: set[str]) -> dict[str, DataKey]:
        keys = self._cache.get_many(subjects)
        missing = subjects - keys.keys()
        if missing:
            found = self._read(missing)
            if new := missing - found.keys():
                made = self._new_keys(sorted(new))
                added = self.store.add_pii_keys([row for row, _ in made.values()])
                found |= {s: made[s][1] for s in added}
                # Read back the others: a writer racing on the same subject won the insert.
                if taken := new - added:
                    found |= self._read(taken)
            if lost := missing - found.keys():
                # Only if a key was erased between the insert and the read back.
                raise StoreUnavailable(f"pii: no data key for {len(lost)} subject(s) yet")
            keys |= found
            self._cache.put_many(found)
        return keys

    def _read(self, subjects: set[str]) -> dict[str, DataKey]:
        out = {}
        for row in self.store.pii_keys(subjects=sorted(subjects)):
            try:
                raw = crypto.unwrap_bytes(self.masters, row["key_id"], row["wrapped"])
            except crypto.Undecryptable:
                # A wrong AUDITQ_PII_KEY: hold the rows back (retried) rather than store
                # them under a key nobody could unwrap, or in clear.
                raise StoreUnavailable(
                    "pii: a data key does not unwrap with AUDITQ_PII_KEY (wrong key?)"
                ) from None
            out[row["subject"]] = DataKey.of(row["key_id"], raw)
        return out

    def _new_keys(self, subjects: list[str]) -> dict[str, tuple[dict[str, str], DataKey]]:
        """New data keys, by subject: each one's row for the store, and the key itself."""
        # The keys and their wrapping nonces from two reads of the OS's random source, not
        # two per key (a backlog of new subjects makes thousands at once); uuid-utils' uuid4
        # (Rust, the same source): a tenth of the stdlib's cost.
        master, made = self.masters[0], {}
        raws, nonces = crypto.new_data_keys(len(subjects)), crypto.nonces(len(subjects))
        for subject, raw, nonce in zip(subjects, raws, nonces, strict=True):
            key_id = str(uuid_utils.uuid4())
            row = {"subject": subject, "key_id": key_id,
                   "wrapped": crypto.wrap(master, key_id, raw, nonce)}  # fmt: skip
            made[subject] = row, DataKey.of(key_id, raw)
        return made
