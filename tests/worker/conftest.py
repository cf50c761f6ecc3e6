"""Fixtures for the worker tests; the helpers they use live in tests/worker/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from auditq.queue import Queue, connect
from tests.worker.helpers import KEYS, Workers


@pytest.fixture
def workers(tmp_path: Path, redis_url: str, clean_db: str) -> Iterator[Workers]:
    procs = Workers(tmp_path, redis_url, clean_db)
    try:
        yield procs
    finally:
        for proc in procs.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def queue(redis_url: str) -> Queue:
    return Queue(connect(redis_url), KEYS, max_len=10_000_000)
