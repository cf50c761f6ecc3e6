"""Fixtures for the worker tests; the helpers they use live in tests/worker/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from auditq.queue import Queue, connect
from tests.worker.helpers import KEYS, Workers


@contextmanager
def _running(procs: Workers) -> Iterator[Workers]:
    try:
        yield procs
    finally:
        for proc in procs.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def workers(tmp_path: Path, redis_url: str, clean_db: str) -> Iterator[Workers]:
    with _running(Workers(tmp_path, redis_url, clean_db)) as procs:
        yield procs


@pytest.fixture
def cluster_workers(tmp_path: Path, cluster_url: str, clean_db: str) -> Iterator[Workers]:
    """Workers on the session's Redis Cluster (tests/conftest.py ``redis_cluster``)."""
    with _running(Workers(tmp_path, cluster_url, clean_db)) as procs:
        yield procs


@pytest.fixture
def queue(redis_url: str) -> Queue:
    return Queue(connect(redis_url), KEYS, max_len=10_000_000)
