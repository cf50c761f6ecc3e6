"""Encrypting personal fields just before a store insert: the one function every writer
(the worker, the clients' direct writes) passes its events through.

The drain is the hot path: a batch asks the store for the keys of the subjects it has not
seen lately in one query (and creates the missing ones in one insert), and unwrapped data
keys stay in a bounded LRU cache (AUDITQ_PII_CACHE_SIZE). A key cached here outlives its
erasure in this process until evicted or restarted: rows written meanwhile are encrypted
under the destroyed key, so they read as erased too (never in clear).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import uuid_utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auditq.config import Settings
from auditq.events import AuditEvent, stored_copy
from auditq.pii import FORMAT, crypto, fields, subject_of
from auditq.stores import Store, StoreUnavailable
from auditq.stores.encoding import dumps

Sealer = Callable[[Sequence[AuditEvent]], Sequence[AuditEvent]]


def as_is(events: Sequence[AuditEvent]) -> Sequence[AuditEvent]:
    return events


def sealer(settings: Settings, store: Store, *, owned: bool = False) -> Sealer:
    """What a writer passes its events through before ``store.insert_events``.

    ``owned``: the writer's events are its own (the worker's, decoded a moment ago), so
    they are sealed in place instead of copied; a client's events may be its caller's."""
    if settings.pii_key is None or not settings.pii_field_list:
        return as_is
    keys = crypto.masters(settings)
    encryptor = Encryptor(store, keys, settings.pii_field_list, settings.pii_cache_size)
    return functools.partial(encryptor.seal, owned=True) if owned else encryptor.seal


class Encryptor:
    def __init__(
        self, store: Store, masters: list[AESGCM], names: Sequence[str], cache_size: int
    ) -> None:
        self.store = store
        self.masters = masters  # the first wraps new keys
        self.fields = fields.Fields(names)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, AESGCM]] = OrderedDict()
        self._listed: dict[tuple[str, ...], str] = {}  # field names -> their JSON array
        self._lock = threading.Lock()  # the drain, reclaim and client threads share it

    def seal(self, events: Sequence[AuditEvent], *, owned: bool = False) -> Sequence[AuditEvent]:
        """The events with their personal fields replaced by ``pii`` ciphertext (its JSON
        text): sealed copies, or, when the events are the caller's ``owned`` ones, the same
        sequence with its events sealed in place (a copy per row was a tenth of the worker's
        cost per event).

        Raises StoreUnavailable when the keys cannot be read or created (a writer retries
        it like a failed insert; nothing is stored in clear meanwhile)."""
        # An event sealed already is skipped: sealing is idempotent.
        take = self.fields.take
        todo = [
            (index, taken)
            for index, event in enumerate(events)
            if event.pii is None and (taken := take(event))[0]
        ]
        if not todo:
            return events
        subjects = [subject_of(events[index].actor_id) for index, _ in todo]
        keys = self._keys(set(subjects))
        copies = None if owned else list(events)  # an owned batch is sealed in place
        encrypt = crypto.encrypt
        nonces = crypto.nonces(len(todo))
        for (index, (found, updates)), subject, nonce in zip(todo, subjects, nonces, strict=True):
            event = events[index]
            key_id, data_key = keys[subject]
            ciphertext = encrypt(data_key, event.id, dumps(found), nonce)
            names = tuple(found)  # their JSON array, encoded once per set of names
            if (listed := self._listed.get(names)) is None:
                listed = self._listed[names] = dumps(list(names)).decode()
            # The ``pii`` column's JSON, as the event carries it to the store: one format per
            # row, no dict to build and then encode (the drain pays it on every row). The key
            # id is a UUID and the ciphertext base64: neither needs escaping.
            # ``updates`` is take's own dict: it becomes the copy's changes as it is.
            updates["pii"] = f'{{"v":{FORMAT},"k":"{key_id}","f":{listed},"c":"{ciphertext}"}}'
            if copies is None:  # the fields exist already, so the values keep their column order
                event.__dict__.update(updates)
            else:
                copies[index] = stored_copy(event, updates)
        return events if copies is None else copies

    def _keys(self, subjects: set[str]) -> dict[str, tuple[str, AESGCM]]:
        with self._lock:
            keys = {s: self._cache[s] for s in subjects if s in self._cache}
            for subject in keys:
                self._cache.move_to_end(subject)
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
            with self._lock:
                self._cache.update(found)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
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
