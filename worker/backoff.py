"""Retrying a store call through transient failures: capped, jittered exponential backoff.

tenacity does the bookkeeping; two choices keep the worker responsive while it waits:
the sleep is a wait on the stop event (SIGTERM ends it at once and raises ``Interrupted``,
leaving the batch pending for another worker), and heartbeats run on their own scheduler
thread, so a worker in backoff still reports itself, as ``backoff``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
    wait_random,
)

from auditq.stores import StoreUnavailable

Hook = Callable[[RetryCallState], None]


class Interrupted(Exception):
    """The worker is stopping: whatever it holds stays pending, for reclaim."""


def retrying(
    *,
    base: float,
    cap: float,
    stopping: threading.Event,
    before: Hook | None = None,
    after: Hook | None = None,
) -> Retrying:
    """Retry StoreUnavailable until it succeeds or the worker stops; other errors pass through.

    Waits are base, 2 x base, 4 x base ... up to cap, plus up to base of random jitter so
    workers that failed together do not retry in lock-step, even once all sit at the cap.
    The floor of base means a worker never spins against a store that is down.
    """

    def sleep(seconds: float) -> None:
        if stopping.wait(seconds):
            raise Interrupted

    return Retrying(
        retry=retry_if_exception_type(StoreUnavailable),
        wait=wait_exponential(multiplier=base, max=cap) + wait_random(0, base),
        stop=stop_never,
        sleep=sleep,
        before=before or (lambda _state: None),
        after=after or (lambda _state: None),
        reraise=True,
    )
