"""``python -m auditq dev``: the whole pipeline on one machine, with nothing configured.

What it starts, in this order:
1. Redis (``auditq.embedded.RedisServer``, with an append-only file) unless REDIS_URL is set;
2. PostgreSQL (``auditq.embedded.PostgresServer``, crash-safe settings) unless DATABASE_URL
   or SUPABASE_URL is set; then Supabase's roles and the migrations (migrations also run on
   a configured DATABASE_URL, as the release phase would);
3. as child processes: the worker (``python -m worker``), the web process (gunicorn with
   the Procfile's ``gunicorn.conf.py``, bound to 127.0.0.1 only) and, with ``--demo RATE``,
   the demo producer (``python -m auditq demo``). Their output is shown prefixed with
   their name, the way ``heroku local`` shows a Procfile's processes.

Whatever survives a restart lives in the data directory (default ``./.auditq``): the
servers' files, ``dev.json`` (the ports, and the generated SECRET_KEY and
DASHBOARD_PASSWORD, so the URL and the login stay the same) and ``dev.env`` (the
embedded servers' connection settings, to run other commands against them).

Stopping: SIGINT (Ctrl-C) or SIGTERM stops the children first (SIGTERM; SIGKILL after a
grace period), then the servers. Every child and server runs in a process group of its
own, so a Ctrl-C in the terminal reaches this process alone and the order holds; and on
Linux each one asks the kernel (PR_SET_PDEATHSIG) to be signalled should this process die
without cleaning up (SIGKILL, OOM killer), so nothing is left behind even then.

A child or server that exits on its own is a crash: dev says which one and shuts the rest
down cleanly (exit status 1) instead of restarting it. In development a crash is a bug to
look at; a restart loop would scroll its traceback away behind a half-working system.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import psycopg

from auditq.config import ConfigError, load_settings
from auditq.embedded import (
    HOST,
    PostgresServer,
    RedisServer,
    ServerError,
    ServerProcess,
    create_supabase_roles,
    free_port,
)
from auditq.migrate import apply_migrations
from auditq.urls import hide_password

REPO = Path(__file__).resolve().parent.parent
STATE_FILE = "dev.json"
ENV_FILE = "dev.env"
DEFAULT_WEB_PORT = 5000
READY_TIMEOUT = 60.0  # seconds the web process may take to answer its first request
STOP_GRACE = 30.0  # seconds children get to finish after SIGTERM (Heroku gives 30 too)
_POLL = 0.2

# The settings dev provides when they are not in the environment. DASHBOARD_PASSWORD and
# SECRET_KEY are generated once and kept in dev.json.
_SECRETS = ("SECRET_KEY", "DASHBOARD_PASSWORD")


# --- processes that go down with us ----------------------------------------------------------

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


def _own_group(death_signal: int) -> dict[str, Any]:
    """Popen arguments: a process group of its own, and death_signal when we die.

    Without PR_SET_PDEATHSIG (not Linux) the child stays in our group instead, so that a
    Ctrl-C or a kill of the group still reaches it.
    """
    if _libc is None:
        return {}
    return {
        "process_group": 0,
        "preexec_fn": functools.partial(_die_with_parent, int(death_signal), os.getpid()),
    }


class _DevRedis(RedisServer):
    def _prepare(self) -> dict[str, Any]:
        return {**super()._prepare(), **_own_group(signal.SIGTERM)}


class _DevPostgres(PostgresServer):
    def _prepare(self) -> dict[str, Any]:
        # SIGINT is Postgres's fast shutdown: it ends the sessions and still stops cleanly.
        return {**super()._prepare(), **_own_group(signal.SIGINT)}


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


# --- state kept in the data directory ------------------------------------------------------


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
    for port in preferred:
        if port and port not in taken and port_is_free(port):
            return port
    while (port := free_port()) in taken:
        pass
    return port


def _is_set(env: dict[str, str], name: str) -> bool:
    # Settings reads variables case-insensitively; so does this.
    return any(key.upper() == name and value for key, value in env.items())


# --- the command ---------------------------------------------------------------------------


class Dev:
    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        demo_rate: float | None = None,
        out: IO[str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.requested_port = port
        self.demo_rate = demo_rate
        self.env = dict(os.environ)
        self.out = out or sys.stdout
        self.redis: ServerProcess | None = None
        self.postgres: ServerProcess | None = None
        self.children: list[Child] = []
        self.web_url = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_reason = ""
        self._force = threading.Event()
        self._stopped = False

    # --- output ------------------------------------------------------------------------------

    def say(self, text: str, name: str = "dev") -> None:
        with self._lock:
            try:
                for line in text.splitlines() or [""]:
                    self.out.write(f"{name:<6} | {line}\n")
                self.out.flush()
            except (OSError, ValueError):  # our stdout is gone; keep going regardless
                pass

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        # Drain to the end even if we cannot print, or the child would block on a full pipe.
        for raw in iter(stream.readline, b""):
            self.say(raw.decode(errors="replace").rstrip("\r\n"), name)
        stream.close()

    # --- signals -----------------------------------------------------------------------------

    def on_signal(self, signum: int, _frame: object) -> None:
        if not self._stop.is_set():
            self._stop_reason = signal.Signals(signum).name
            self._stop.set()
        elif not self._force.is_set():
            self._force.set()
            self.say("second signal: killing what is still running")

    # --- start ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, watch it, stop it. Returns the exit status."""
        want_redis = not _is_set(self.env, "REDIS_URL")
        want_postgres = not (_is_set(self.env, "DATABASE_URL") or _is_set(self.env, "SUPABASE_URL"))
        set_store = want_postgres and not _is_set(self.env, "AUDITQ_STORE")
        # Check the rest of the configuration before starting anything, with stand-ins for
        # what dev is about to provide: a bad AUDITQ_* value fails here, in one line.
        stand_ins: dict[str, str] = {}
        if want_redis:
            stand_ins["redis_url"] = f"redis://{HOST}:1/0"
        if want_postgres:
            stand_ins["database_url"] = f"postgresql://postgres@{HOST}:1/postgres"
        if set_store:
            stand_ins["store"] = "postgres"
        configured = load_settings(**stand_ins)

        # Owner only: it holds audit data and the dashboard's login. (As root, the embedded
        # Postgres adds the search bit for its system user; that allows no listing.)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state = State(self.data_dir / STATE_FILE)
        web_port = self._web_port(state, configured.port)
        child_env = dict(self.env)
        provided: dict[str, str] = {}

        if want_redis:
            self.say(f"starting Redis (data in {_shown(self.data_dir / 'redis')})")
            self.redis = _DevRedis(
                self.data_dir / "redis",
                port=choose_port(state.get("redis_port"), taken={web_port}),
                persistent=True,
            ).start()
            state.set(redis_port=self.redis.port)
            provided["REDIS_URL"] = self.redis.url  # type: ignore[attr-defined]
        if self._stop.is_set():
            return self._exit_status()

        if want_postgres:
            self.say(f"starting PostgreSQL (data in {_shown(self.data_dir / 'postgres')})")
            self.postgres = _DevPostgres(
                self.data_dir / "postgres",
                port=choose_port(state.get("postgres_port"), taken={web_port}),
            ).start()
            state.set(postgres_port=self.postgres.port)
            dsn = self.postgres.dsn  # type: ignore[attr-defined]
            create_supabase_roles(dsn)
            self._migrate(dsn)
            provided["DATABASE_URL"] = dsn
            if set_store:
                provided["AUDITQ_STORE"] = "postgres"
        elif configured.database_url is not None:
            self._migrate(configured.database_url.get_secret_value())
        else:
            self.say(
                "DATABASE_URL is not set, so migrations were not applied here: run"
                " `supabase db push`, or set DATABASE_URL and run `python -m auditq migrate`"
            )
        if self._stop.is_set():
            return self._exit_status()

        generated = []
        for name in _SECRETS:
            if _is_set(self.env, name):
                continue
            key = name.lower()
            if not state.get(key):
                state.set(**{key: secrets.token_urlsafe(32 if name == "SECRET_KEY" else 12)})
            child_env[name] = state.get(key)
            generated.append(name)
        self._write_env_file(provided)
        child_env.update(provided)
        child_env["PORT"] = str(web_port)
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, [child_env.get("PYTHONPATH")])]
        )
        state.set(web_port=web_port)

        python = sys.executable
        self._spawn("worker", [python, "-m", "worker"], child_env)
        # The Procfile's web command, bound to loopback only: the CLI's --bind overrides
        # gunicorn.conf.py's 0.0.0.0:$PORT.
        web_command = [python, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        web_command += ["--bind", f"{HOST}:{web_port}", "dashboard:create_app()"]
        self._spawn("web", web_command, child_env)
        if self.demo_rate:
            demo_command = [python, "-m", "auditq", "demo", "--rate", f"{self.demo_rate:g}"]
            self._spawn("demo", demo_command, child_env)
        for child in self.children:
            child.pump.start()

        self.web_url = f"http://{HOST}:{web_port}/"
        if not self._wait_for_web(web_port):
            return self._exit_status()
        self._banner(state, provided, generated)
        return self._supervise()

    def _web_port(self, state: State, configured_port: int) -> int:
        explicit = self.requested_port
        if explicit is None and _is_set(self.env, "PORT"):
            explicit = configured_port
        if explicit is not None:
            if not port_is_free(explicit):
                raise ConfigError(f"port {explicit} is in use; choose another with --port")
            return explicit
        return choose_port(state.get("web_port"), DEFAULT_WEB_PORT)

    def _migrate(self, dsn: str) -> None:
        try:
            apply_migrations(dsn)  # logs each file it applies
        except psycopg.Error as error:
            # One line that names the problem (a missing role, a refused login), without
            # the password.
            detail = getattr(error.diag, "message_primary", None) or str(error).strip()
            detail = detail.splitlines()[0] if detail else type(error).__name__
            password = urlsplit(dsn).password
            if password:
                detail = detail.replace(password, "***")
            raise ServerError(
                f"applying the migrations to {hide_password(dsn)} failed: {detail}"
            ) from None

    def _write_env_file(self, provided: dict[str, str]) -> None:
        path = self.data_dir / ENV_FILE
        lines = [
            "# Written by `python -m auditq dev` at each start: the settings of the servers it",
            f"# runs. To point another command at them: set -a; . {_shown(path)}; set +a",
            *(f"{name}={value}" for name, value in provided.items()),
        ]
        path.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **_own_group(signal.SIGTERM),
        )
        assert proc.stdout is not None
        # Started by the caller once every child is spawned: forking (preexec_fn runs Python
        # in the child) is safest while this process has no other threads.
        pump = threading.Thread(
            target=self._pump, args=(name, proc.stdout), name=f"pump-{name}", daemon=True
        )
        self.children.append(Child(name, proc, pump))

    def _wait_for_web(self, port: int) -> bool:
        """Wait until the web process answers an HTTP request (whatever the status)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._stop.is_set():
            if self._crashed() is not None:
                return False
            if _answers(port):
                return True
            if time.monotonic() > deadline:
                self.say(f"the web process did not answer on port {port} in {READY_TIMEOUT:g}s")
                return False
            time.sleep(_POLL)
        return False

    def _banner(self, state: State, provided: dict[str, str], generated: list[str]) -> None:
        where = _shown(self.data_dir)
        password = (
            f"{state.get('dashboard_password')}   (generated, kept in {where}/{STATE_FILE})"
            if "DASHBOARD_PASSWORD" in generated
            else "the DASHBOARD_PASSWORD you set"
        )
        settings = load_settings(**{k.lower(): v for k, v in provided.items()})
        redis_line = hide_password(settings.redis_url) + (
            f"   (embedded, data in {where}/redis)" if "REDIS_URL" in provided else ""
        )
        if settings.database_url is not None:
            database_line = hide_password(settings.database_url.get_secret_value())
            if "DATABASE_URL" in provided:
                database_line += f"   (embedded, data in {where}/postgres)"
        else:
            database_line = "none (events go to Supabase)"
        store_line = settings.store_kind or "none"
        if settings.store_kind == "supabase":
            store_line += f" ({settings.supabase_url})"
        lines = [
            "",
            "auditq dev is running",
            f"  dashboard  {self.web_url}",
            f"  password   {password}",
            f"  redis      {redis_line}",
            f"  database   {database_line}",
            f"  store      {store_line}",
        ]
        if self.demo_rate:
            lines.append(f"  demo       about {self.demo_rate:g} events/s")
        if provided:
            lines.append(f"  env        {where}/{ENV_FILE} (these settings, for other commands)")
        lines += ["Press Ctrl-C to stop everything.", ""]
        self.say("\n".join(lines))

    # --- watch and stop ------------------------------------------------------------------------

    def _crashed(self) -> str | None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                return f"{child.name} exited unexpectedly ({_describe_exit(code)})"
        for server in (self.redis, self.postgres):
            if server is not None and not server.running:
                return f"{server.name} exited unexpectedly (see {server.log_path})"
        return None

    def _supervise(self) -> int:
        while not self._stop.wait(_POLL):
            if self._crashed() is not None:
                break
        return self._exit_status()

    def _exit_status(self) -> int:
        crash = self._crashed()
        if self._stop.is_set():
            self.say(f"{self._stop_reason}: stopping")
            return 0
        if crash is not None:
            self.say(f"{crash}; stopping everything")
        return 1

    def shutdown(self) -> None:
        """Children first (demo, then worker and web), then the servers. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        by_name = {child.name: child for child in self.children}
        for group in (["demo"], ["worker", "web"]):
            self._stop_children([by_name[name] for name in group if name in by_name])
        for child in self.children:
            if child.pump.is_alive():
                child.pump.join(timeout=5)
        for server in (self.postgres, self.redis):
            if server is not None:
                if self._force.is_set():
                    server.kill()
                else:
                    server.stop()
        if self.children or self.redis or self.postgres:
            self.say("stopped")

    def _stop_children(self, children: list[Child]) -> None:
        for child in children:
            if child.running:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in children:
            while child.running and time.monotonic() < deadline and not self._force.is_set():
                time.sleep(0.05)
            if child.running:
                self.say(f"{child.name} did not stop in time: killing it")
            # The whole group, even after a clean exit: nothing it started may outlive it.
            child.signal_group(signal.SIGKILL)
            child.proc.wait()


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _shown(path: Path) -> str:
    """path relative to the working directory when it is under it, for shorter messages."""
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


# --- entry point -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--demo",
        metavar="RATE",
        type=float,
        default=None,
        help="also produce demo audit traffic at about RATE events per second",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="dashboard port (default: $PORT, else the last one used, else 5000, else any)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".auditq"),
        help="where the embedded servers and dev's state live (default: ./.auditq)",
    )


def main(args: argparse.Namespace) -> int:
    if args.demo is not None and args.demo <= 0:
        raise ConfigError("--demo RATE must be a positive number of events per second")
    dev = Dev(args.data_dir, port=args.port, demo_rate=args.demo)
    handlers: dict[int, Callable[..., Any] | int | None] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handlers[sig] = signal.signal(sig, dev.on_signal)
    try:
        return dev.run()
    except ServerError as error:
        dev.say(f"could not start: {error}")
        return 1
    finally:
        dev.shutdown()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
