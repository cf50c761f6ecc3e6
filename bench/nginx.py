"""A native reverse proxy for the benchmarks: Debian's nginx serving /rest/v1/ -> PostgREST.

Supabase's API gateway is native code, so the benchmarks put a native proxy in front of
PostgREST for the raw baseline and auditq alike. The tests' Python gateway
(tests/services.py) spends CPU on the same cores for every request, which throttled the
baseline more than auditq; it stays in the tests, where behaviour matters, not speed.

nginx runs as a child process (``daemon off``) with its config, pid file, logs and temp
directories in one directory of its own; `scripts/install-bench-deps` installs it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from auditq.devtools.embedded import HOST, ServerError, ServerProcess

_CONFIG = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 64m;
    client_body_buffer_size 16m;
    upstream postgrest {{
        server {upstream};
        keepalive 32;
    }}
    server {{
        listen {host}:{port};
        location /rest/v1/ {{
            proxy_pass http://postgrest/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
        location = /nginx-ready {{ return 204; }}
    }}
}}
"""


def nginx_binary() -> str:
    # Debian installs it in /usr/sbin, which a non-root PATH may not list.
    path = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if path is None:
        raise ServerError("nginx not found: run scripts/install-bench-deps")
    return path


class NginxProxy(ServerProcess):
    """nginx on 127.0.0.1 forwarding ``/rest/v1/<rest>`` to ``upstream`` (host:port)."""

    name = "nginx"
    stop_signal = signal.SIGQUIT  # graceful: finish the requests in flight

    def __init__(self, work_dir: Path, upstream: str, *, port: int | None = None) -> None:
        self.dir = work_dir.resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.dir / "nginx.log", port)
        self.upstream = upstream
        self.config_path = self.dir / "nginx.conf"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _prepare(self) -> dict[str, Any]:
        self.config_path.write_text(
            _CONFIG.format(dir=self.dir, host=self.host, port=self.port, upstream=self.upstream)
        )
        return {}

    def _command(self) -> list[str]:
        return [nginx_binary(), "-p", str(self.dir), "-c", str(self.config_path)]

    def _ready(self) -> bool:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=1)
        try:
            connection.request("GET", "/nginx-ready")
            return connection.getresponse().status == 204
        except OSError:
            return False
        finally:
            connection.close()
