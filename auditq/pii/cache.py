"""The unwrapped data keys a writer keeps in memory (AUDITQ_PII_CACHE_SIZE), by subject.

The drain looks up every subject of every batch here, so a hit must cost no more than a
dict lookup. An ``OrderedDict`` kept in strict LRU order moved each hit to its end: that
reordering, under the lock, was about half of the writer's time on its keys in a drain
(bench/HISTORY.md, issue 15, Session 13). This cache keeps two generations instead, each
at most half the size: keys are added to the young one, and a key found only in the old one
moves up. When the young generation is full it becomes the old one, and the old one is
dropped. So a key used within the last half of the size's insertions stays, one unused
since a whole size's insertions is gone, and at most ``size`` keys are held (two if it is
1): least recently used first out, to within a generation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

Key = TypeVar("Key")


class KeyCache(Generic[Key]):
    def __init__(self, size: int) -> None:
        self._half = max(1, size // 2)
        self._young: dict[str, Key] = {}
        self._old: dict[str, Key] = {}
        self._lock = threading.Lock()  # the drain, reclaim and client threads share it

    def __len__(self) -> int:
        return len(self._young.keys() | self._old.keys())

    def get_many(self, subjects: Iterable[str]) -> dict[str, Key]:
        """The keys held for these subjects (the others are missing from the result)."""
        found = {}
        with self._lock:
            young, old = self._young, self._old
            for subject in subjects:
                if (key := young.get(subject)) is None:
                    if (key := old.get(subject)) is None:
                        continue
                    self._add(subject, key)
                    young, old = self._young, self._old  # new generations, if that filled one
                found[subject] = key
        return found

    def put_many(self, keys: Mapping[str, Key]) -> None:
        with self._lock:
            for subject, key in keys.items():
                self._add(subject, key)

    def _add(self, subject: str, key: Key) -> None:
        if len(self._young) >= self._half and subject not in self._young:
            self._old, self._young = self._young, {}
        self._young[subject] = key
