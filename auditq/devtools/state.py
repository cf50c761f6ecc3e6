"""What ``python -m auditq dev`` keeps between runs: ports and generated secrets (dev.json),
and how it picks a port."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from auditq.config import ConfigError
from auditq.devtools.embedded import HOST, free_port


class State:
    """dev.json: ports and generated secrets, readable by the owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            self.data = {}
        except ValueError:
            raise ConfigError(f"{path} is not valid JSON; delete it to start afresh") from None

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, **values: Any) -> None:
        self.data.update(values)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.data, out, indent=2, sort_keys=True)
            out.write("\n")
        tmp.replace(self.path)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As servers bind: a port left in TIME_WAIT by the previous run counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def choose_port(*preferred: int | None, taken: set[int] | frozenset[int] = frozenset()) -> int:
    """The first preferred port that is free, else any free port; never one in ``taken``
    (ports chosen for servers that have not bound them yet)."""
    for wanted in preferred:
        if wanted and wanted not in taken and port_is_free(wanted):
            return wanted
    while (port := free_port()) in taken:
        pass
    return port
