"""Jobs that run beside the drain on the worker's APScheduler scheduler (and the web's own).

Each kind of background job (alert evaluation, sealing, retention) gets a thread of its own,
so a slow receiver, a long seal pass or an archive upload never delays the drain or the
heartbeat; one run at a time, and runs missed while one was busy collapse into one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any


def every(
    scheduler: Any, executor: str, func: Callable[[], object], seconds: float, **options: Any
) -> None:
    """Run ``func`` every ``seconds`` on the single thread named ``executor`` (made on first
    use); ``options`` go to ``add_job`` as they are (``id``, ``name``, ``next_run_time``...)."""
    from apscheduler.executors.pool import ThreadPoolExecutor

    with contextlib.suppress(ValueError):  # the executor exists already: share its thread
        scheduler.add_executor(ThreadPoolExecutor(1), executor)
    scheduler.add_job(
        func,
        "interval",
        seconds=seconds,
        executor=executor,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        **options,
    )
