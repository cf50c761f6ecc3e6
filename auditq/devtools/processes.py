"""Processes that go down with ``python -m auditq dev``: children and servers in process
groups of their own, each asking the kernel to signal it should dev die without cleaning up.

A process group of its own means a Ctrl-C in the terminal reaches dev alone, so dev can stop
the children first and the servers last. On Linux each one also asks the kernel
(PR_SET_PDEATHSIG) for a signal should dev die without cleaning up (SIGKILL, OOM killer), so
nothing is left behind even then. Without PR_SET_PDEATHSIG (not Linux) a child stays in
dev's group instead, so that a Ctrl-C or a kill of the group still reaches it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from auditq.devtools.embedded import PostgresServer, RedisServer

_PR_SET_PDEATHSIG = 1
_libc: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(sig: int, parent: int) -> None:
    # Runs in the child between fork and exec (after Popen's setuid, which would clear it).
    _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


def own_group(death_signal: int) -> dict[str, Any]:
    """Popen arguments: a process group of its own, and death_signal when we die (or, off
    Linux, nothing: the child stays in our group)."""
    if _libc is None:
        return {}
    return {
        "process_group": 0,
        "preexec_fn": functools.partial(_die_with_parent, int(death_signal), os.getpid()),
    }


class DevRedis(RedisServer):
    def _prepare(self) -> dict[str, Any]:
        return {**super()._prepare(), **own_group(signal.SIGTERM)}


class DevPostgres(PostgresServer):
    def _prepare(self) -> dict[str, Any]:
        # SIGINT is Postgres's fast shutdown: it ends the sessions and still stops cleanly.
        return {**super()._prepare(), **own_group(signal.SIGINT)}


@dataclass
class Child:
    """A child process whose output is copied to ours, each line prefixed with its name."""

    name: str
    proc: subprocess.Popen[bytes]
    pump: threading.Thread

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if _libc is not None:
                os.killpg(self.proc.pid, sig)  # gunicorn's workers too
            else:
                self.proc.send_signal(sig)
