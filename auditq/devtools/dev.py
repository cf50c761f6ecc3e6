"""``python -m auditq dev``: the whole pipeline on one machine, with nothing configured.

What it starts, in this order (``Dev.run``: plan, start the servers, build the children's
environment, start the children, supervise):
1. Redis (``embedded.RedisServer``, with an append-only file) unless REDIS_URL is set;
2. PostgreSQL (``embedded.PostgresServer``, crash-safe settings) unless DATABASE_URL or
   SUPABASE_URL is set; then Supabase's roles and the migrations (migrations also run on
   a configured DATABASE_URL, as the release phase would);
3. as child processes: the worker (``python -m worker``), the web process (gunicorn with
   the Procfile's ``gunicorn.conf.py``, bound to 127.0.0.1 only) and, with ``--demo RATE``,
   the demo producer (``python -m auditq demo``). Their output is shown prefixed with
   their name, the way ``heroku local`` shows a Procfile's processes. Their environment is
   ours plus what dev provides, and AUDITQ_ALERT_ALLOW_PRIVATE=true unless set (webhooks to
   this machine are normal in development).

Whatever survives a restart lives in the data directory (default ``./.auditq``): the
servers' files, ``dev.json`` (the ports, and the generated SECRET_KEY,
DASHBOARD_PASSWORD, AUDITQ_PII_KEY and seal key pair, so the URL, the login, the stored
personal fields and the seal chain stay usable) and ``dev.env`` (the
embedded servers' connection settings, to run other commands against them).

Stopping: SIGINT (Ctrl-C) or SIGTERM stops the children first (SIGTERM; SIGKILL after a
grace period), then the servers (``processes``: each in a process group of its own, and
signalled by the kernel should dev die without cleaning up).

A child or server that exits on its own is a crash: dev says which one and shuts the rest
down cleanly (exit status 1) instead of restarting it. In development a crash is a bug to
look at; a restart loop would scroll its traceback away behind a half-working system.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import os
import secrets
import signal
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

from auditq.config import ConfigError, Settings, load_settings
from auditq.devtools.embedded import HOST, ServerError, ServerProcess, create_supabase_roles
from auditq.devtools.processes import Child, DevPostgres, DevRedis, own_group
from auditq.devtools.state import State, choose_port, port_is_free
from auditq.migrate import apply_migrations
from auditq.seals import signing
from auditq.urls import hide_password

REPO = Path(__file__).resolve().parents[2]
STATE_FILE = "dev.json"
ENV_FILE = "dev.env"
DEFAULT_WEB_PORT = 5000
READY_TIMEOUT = 60.0  # seconds the web process may take to answer its first request
STOP_GRACE = 30.0  # seconds children get to finish after SIGTERM (Heroku gives 30 too)
_POLL = 0.2

# The settings dev provides when they are not in the environment, generated once and kept
# in dev.json (the login stays the same, and stored personal fields stay readable). The
# seal key pair is generated together (see _seal_pair).
_SECRETS: dict[str, Callable[[], str]] = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "DASHBOARD_PASSWORD": lambda: secrets.token_urlsafe(12),
    "AUDITQ_PII_KEY": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
}
# Settings dev gives its children unless the environment has them: webhooks to a receiver
# on this machine (a local test server) are the norm in development, and seals follow the
# rows closely (5 s) so the integrity page shows them at once.
_SEAL_PAIR = ["AUDITQ_SEAL_KEY", "AUDITQ_SEAL_PUBLIC_KEY"]  # set neither, dev makes both
_DEV_DEFAULTS = {"AUDITQ_ALERT_ALLOW_PRIVATE": "true", "AUDITQ_SEAL_GRACE": "5"}


def _is_set(env: dict[str, str], name: str) -> bool:
    # Settings reads variables case-insensitively; so does this.
    return any(key.upper() == name and value for key, value in env.items())


# --- the command ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    want_redis: bool
    want_postgres: bool
    set_store: bool  # AUDITQ_STORE=postgres for the embedded database
    configured: Settings  # the environment's settings, with stand-ins for what dev provides


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
        plan = self._plan()
        # Owner only: it holds audit data and the dashboard's login. (As root, the embedded
        # Postgres adds the search bit for its system user; that allows no listing.)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state = State(self.data_dir / STATE_FILE)
        web_port = self._web_port(state, plan.configured.port)
        provided = self.start_servers(plan, state, taken={web_port})
        if self._stop.is_set():
            return self._exit_status()
        env, generated = self.children_env(state, provided, web_port)
        self.start_children(env, web_port)
        if not self._wait_for_web(web_port):
            return self._exit_status()
        self._banner(state, provided, generated)
        return self._supervise()

    def _plan(self) -> Plan:
        """What dev must provide, and the rest of the configuration checked before anything
        starts, with stand-ins for what dev provides: a bad AUDITQ_* value fails here, in
        one line."""
        want_redis = not _is_set(self.env, "REDIS_URL")
        want_postgres = not (_is_set(self.env, "DATABASE_URL") or _is_set(self.env, "SUPABASE_URL"))
        set_store = want_postgres and not _is_set(self.env, "AUDITQ_STORE")
        stand_ins: dict[str, str] = {}
        if want_redis:
            stand_ins["redis_url"] = f"redis://{HOST}:1/0"
        if want_postgres:
            stand_ins["database_url"] = f"postgresql://postgres@{HOST}:1/postgres"
        if set_store:
            stand_ins["store"] = "postgres"
        return Plan(want_redis, want_postgres, set_store, load_settings(**stand_ins))

    def start_servers(self, plan: Plan, state: State, taken: set[int]) -> dict[str, str]:
        """Start the servers the plan wants and migrate; returns the settings they provide
        (an incomplete set if a signal came in between)."""
        provided: dict[str, str] = {}
        if plan.want_redis:
            self.say(f"starting Redis (data in {_shown(self.data_dir / 'redis')})")
            self.redis = DevRedis(
                self.data_dir / "redis",
                port=choose_port(state.get("redis_port"), taken=taken),
                persistent=True,
            ).start()
            state.set(redis_port=self.redis.port)
            provided["REDIS_URL"] = self.redis.url
        if self._stop.is_set():
            return provided

        if plan.want_postgres:
            self.say(f"starting PostgreSQL (data in {_shown(self.data_dir / 'postgres')})")
            self.postgres = DevPostgres(
                self.data_dir / "postgres",
                port=choose_port(state.get("postgres_port"), taken=taken),
            ).start()
            state.set(postgres_port=self.postgres.port)
            dsn = self.postgres.dsn
            create_supabase_roles(dsn)
            self._migrate(dsn)
            provided["DATABASE_URL"] = dsn
            if plan.set_store:
                provided["AUDITQ_STORE"] = "postgres"
        elif plan.configured.database_url is not None:
            self._migrate(plan.configured.database_url.get_secret_value())
        else:
            self.say(
                "DATABASE_URL is not set, so migrations were not applied here: run"
                " `supabase db push`, or set DATABASE_URL and run `python -m auditq migrate`"
            )
        self._write_env_file(provided)
        return provided

    def children_env(
        self, state: State, provided: dict[str, str], web_port: int
    ) -> tuple[dict[str, str], list[str]]:
        """The environment of the worker, web and demo processes, and the names of the
        secrets dev generated for it (kept in dev.json, so the login stays the same)."""
        env = dict(self.env)
        generated = []
        for name, make in _SECRETS.items():
            if _is_set(self.env, name):
                continue
            key = name.lower()
            if not state.get(key):
                state.set(**{key: make()})
            env[name] = state.get(key)
            generated.append(name)
        if not any(_is_set(self.env, name) for name in _SEAL_PAIR):
            if not all(state.get(name.lower()) for name in _SEAL_PAIR):
                pair = signing.generate()
                state.set(auditq_seal_key=pair.private, auditq_seal_public_key=pair.public)
            env.update({name: state.get(name.lower()) for name in _SEAL_PAIR})
            generated += _SEAL_PAIR
        for name, value in _DEV_DEFAULTS.items():
            if not _is_set(self.env, name):
                env[name] = value
        env.update(provided)
        env["PORT"] = str(web_port)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        state.set(web_port=web_port)
        return env, generated

    def start_children(self, env: dict[str, str], web_port: int) -> None:
        """The worker, the web process (the Procfile's command, bound to loopback only: the
        CLI's --bind overrides gunicorn.conf.py's 0.0.0.0:$PORT) and the demo producer."""
        python = sys.executable
        self._spawn("worker", [python, "-m", "worker"], env)
        web_command = [python, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        web_command += ["--bind", f"{HOST}:{web_port}", "dashboard:create_app()"]
        self._spawn("web", web_command, env)
        if self.demo_rate:
            demo_command = [python, "-m", "auditq", "demo", "--rate", f"{self.demo_rate:g}"]
            self._spawn("demo", demo_command, env)
        for child in self.children:
            child.pump.start()
        self.web_url = f"http://{HOST}:{web_port}/"

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
            **own_group(signal.SIGTERM),
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
        store_line: str = settings.store_kind or "none"
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
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
