"""``python -m auditq dev``: the whole system from nothing, and nothing left behind.

The command runs as a real subprocess with no auditq, Redis or database variables set, in
a temporary working directory; the test talks to what it starts over HTTP and SQL, stops it
with SIGINT, and checks with psutil that every process it started is gone.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import psycopg
import redis

from auditq.config import load_settings
from auditq.devtools.dev import Dev
from auditq.devtools.embedded import HOST, free_port
from auditq.devtools.state import State, choose_port, port_is_free
from auditq.seals import signing
from tests.services import LocalSupabase

REPO = Path(__file__).resolve().parents[3]
READY_DEADLINE = 60.0
_SCRUBBED = {
    "REDIS_URL",
    "DATABASE_URL",
    "SECRET_KEY",
    "DASHBOARD_PASSWORD",
    "DASHBOARD_VIEWER_PASSWORD",
    "METRICS_TOKEN",
    "INGEST_TOKEN",
    "API_TOKEN",
    "PORT",
    "AUDITQ_PII_KEY",
    "AUDITQ_SEAL_KEY",
    "AUDITQ_SEAL_PUBLIC_KEY",
    "AUDITQ_SEAL_GRACE",
}


def scrubbed_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in _SCRUBBED and not key.upper().startswith(("SUPABASE_", "AUDITQ_"))
    }
    env["PYTHONPATH"] = str(REPO)
    return env


def alive(proc: psutil.Process) -> bool:
    """Still running (a zombie has released everything; is_running() guards pid reuse)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


class DevRun:
    """One `python -m auditq dev` subprocess, its output in a file, its descendants tracked."""

    def __init__(
        self, cwd: Path, data_dir: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = cwd / f"dev-{time.monotonic_ns()}.log"
        self.data_dir = data_dir
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "auditq", "dev", "--data-dir", str(data_dir), *args],
                cwd=cwd,
                env={**scrubbed_env(), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our own SIGINT never reaches it by accident
            )
        self.descendants: dict[int, psutil.Process] = {}

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, *texts: str) -> str:
        deadline = time.monotonic() + READY_DEADLINE
        while not all(text in (output := self.output()) for text in texts):
            assert time.monotonic() < deadline, f"missing {texts}:\n{output}"
            time.sleep(0.1)
        return output

    def track(self) -> list[psutil.Process]:
        """Remember every process it has started so far (also grandchildren)."""
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.descendants.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
        return list(self.descendants.values())

    def wait_until_ready(self) -> int:
        """The dashboard port, once /healthz answers 200."""
        deadline = time.monotonic() + READY_DEADLINE
        while True:
            assert self.proc.poll() is None, f"dev exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"not ready in time:\n{self.output()}"
            state = State(self.data_dir / "dev.json")
            port = state.get("web_port")
            if port and "auditq dev is running" in self.output():
                try:
                    if get(port, "/healthz")[0] == 200:
                        self.track()
                        return port
                except OSError:
                    pass
            time.sleep(0.2)

    def interrupt(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        self.track()
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        """Whatever happened: nothing it started keeps running."""
        self.track()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for proc in self.descendants.values():
            if alive(proc):
                with suppress(psutil.NoSuchProcess):
                    proc.kill()
        psutil.wait_procs(list(self.descendants.values()), timeout=10)


@contextmanager
def dev_run(
    cwd: Path, data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[DevRun]:
    run = DevRun(cwd, data_dir, *args, env=env)
    try:
        yield run
    finally:
        run.cleanup()


def dev_setting(data_dir: Path, name: str) -> str:
    """A setting dev wrote for other commands (dev.env)."""
    text = (data_dir / "dev.env").read_text()
    match = re.search(rf"^{name}=(\S+)$", text, re.MULTILINE)
    assert match, text
    return match.group(1)


def dead_letters(data_dir: Path) -> int:
    with redis.Redis.from_url(dev_setting(data_dir, "REDIS_URL")) as client:
        return client.xlen("audit:dead")


def count_rows(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute(
            "select count(*), count(*) filter (where category = 'critical'),"
            " count(distinct action) from public.audit_logs"
        ).fetchone()
    assert row is not None
    return row


def wait_for_rows(dsn: str, minimum: int, dev: DevRun) -> tuple[int, int, int]:
    deadline = time.monotonic() + READY_DEADLINE
    while True:
        counts = count_rows(dsn)
        if counts[0] >= minimum and counts[1] > 0:
            return counts
        assert dev.proc.poll() is None, f"dev exited:\n{dev.output()}"
        assert time.monotonic() < deadline, f"only {counts} rows:\n{dev.output()}"
        time.sleep(0.5)


def assert_all_gone(dev: DevRun) -> None:
    names = {proc.pid: proc.name() for proc in dev.descendants.values() if alive(proc)}
    assert not names, f"left running: {names}\n{dev.output()}"


def test_dev_runs_everything_from_nothing_and_stops_cleanly(tmp_path: Path) -> None:
    cwd = tmp_path / "project"
    cwd.mkdir()
    data_dir = cwd / ".auditq"
    port = free_port()

    with dev_run(cwd, data_dir, "--demo", "200", "--port", str(port)) as dev:
        assert dev.wait_until_ready() == port
        status, body = get(port, "/login")
        assert status == 200 and 'type="password"' in body
        state = State(data_dir / "dev.json")
        password = state.get("dashboard_password")
        assert password
        dev.wait_for_output(
            f"dashboard  http://127.0.0.1:{port}/",
            f"password   {password}",
            f"Listening at: http://127.0.0.1:{port}",  # loopback only
        )

        dsn = dev_setting(data_dir, "DATABASE_URL")
        rows, critical, actions = wait_for_rows(dsn, 200, dev)
        assert actions >= 10  # the demo's variety: logins, failures, bans, role changes...
        deadline = time.monotonic() + READY_DEADLINE
        while (dead := dead_letters(data_dir)) == 0:  # the demo's first malformed entry
            assert time.monotonic() < deadline, dev.output()
            time.sleep(0.2)

        started = {proc.name() for proc in dev.track()}
        assert {"redis-server", "postgres"} <= started
        commands = [" ".join(proc.cmdline()) for proc in dev.descendants.values() if alive(proc)]
        for expected in ("gunicorn", "-m worker", "auditq demo"):
            assert any(expected in command for command in commands), (expected, commands)

        assert dev.interrupt() == 0, dev.output()
        assert_all_gone(dev)
        assert "stopped" in dev.output()
        # Children stop before the servers, so none of them fails on a vanished connection.
        assert "Traceback" not in dev.output(), dev.output()

    # Same data directory again: the rows, Redis's data (append-only file), the login and
    # the secret key are all still there.
    with dev_run(cwd, data_dir, "--port", str(port)) as again:
        assert again.wait_until_ready() == port
        assert count_rows(dev_setting(data_dir, "DATABASE_URL"))[0] >= rows
        assert dead_letters(data_dir) >= dead
        assert State(data_dir / "dev.json").data == state.data
        assert again.interrupt() == 0, again.output()
        assert_all_gone(again)


def test_what_is_configured_is_used_instead_of_the_embedded_servers(
    tmp_path: Path, redis_url: str, clean_db: str, postgrest: LocalSupabase
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "SUPABASE_URL": postgrest.url,
        "SUPABASE_SERVICE_ROLE_KEY": postgrest.service_key,
    }
    data_dir = tmp_path / ".auditq"
    with dev_run(tmp_path, data_dir, "--demo", "100", "--port", str(free_port()), env=env) as dev:
        dev.wait_until_ready()
        wait_for_rows(clean_db, 50, dev)  # through PostgREST, the supabase store
        names = {proc.name() for proc in dev.track()}
        assert not names & {"redis-server", "postgres"}
        # No DATABASE_URL to apply migrations with: dev says so.
        output = dev.wait_for_output("store      supabase", "migrations were not applied")
        assert postgrest.service_key not in output
        assert dev.interrupt(signal.SIGTERM) == 0, dev.output()  # as a process manager stops it
        assert "SIGTERM: stopping" in dev.output()
        assert_all_gone(dev)


def test_a_crashed_child_stops_everything_with_a_message(tmp_path: Path) -> None:
    data_dir = tmp_path / ".auditq"
    with dev_run(tmp_path, data_dir, "--port", str(free_port())) as dev:
        dev.wait_until_ready()
        worker = next(
            proc for proc in dev.track() if alive(proc) and "-m worker" in " ".join(proc.cmdline())
        )
        worker.kill()
        assert dev.proc.wait(60) == 1
        assert "worker exited unexpectedly (killed by SIGKILL)" in dev.output()
        assert_all_gone(dev)


def test_sigkill_of_dev_still_leaves_nothing_behind(tmp_path: Path) -> None:
    # No cleanup can run in a SIGKILLed process: each child and server has asked the kernel
    # for a signal when its parent dies (PR_SET_PDEATHSIG).
    data_dir = tmp_path / ".auditq"
    with dev_run(tmp_path, data_dir, "--port", str(free_port())) as dev:
        dev.wait_until_ready()
        processes = dev.track()
        dev.proc.kill()
        dev.proc.wait()
        gone, still = psutil.wait_procs(processes, timeout=30)
        assert not [proc for proc in still if alive(proc)], dev.output()


def test_ports_are_reused_when_free_and_replaced_when_taken() -> None:
    port = free_port()
    assert port_is_free(port)
    assert choose_port(port) == port
    with socket.socket() as taken:
        taken.bind((HOST, port))
        taken.listen()
        assert not port_is_free(port)
        other = choose_port(port, None)
        assert other != port
    assert choose_port(port, taken={port}) != port  # chosen for another server already


def test_state_file_is_private(tmp_path: Path) -> None:
    state = State(tmp_path / "dev.json")
    state.set(dashboard_password="x")
    assert (tmp_path / "dev.json").stat().st_mode & 0o777 == 0o600
    assert State(tmp_path / "dev.json").get("dashboard_password") == "x"


def test_children_get_private_webhooks_allowed_and_keep_their_generated_login(
    tmp_path: Path,
) -> None:
    dev = Dev(tmp_path)
    dev.env = {"PATH": "/usr/bin"}
    state = State(tmp_path / "dev.json")
    env, generated = dev.children_env(state, {"REDIS_URL": "redis://127.0.0.1:7/0"}, 5123)
    # A webhook to a receiver on this machine is normal in development.
    assert env["AUDITQ_ALERT_ALLOW_PRIVATE"] == "true"
    assert "AUDITQ_TRUSTED_PROXIES" not in env  # no proxy in front: headers not believed
    assert sorted(generated) == [
        "AUDITQ_PII_KEY", "AUDITQ_SEAL_KEY", "AUDITQ_SEAL_PUBLIC_KEY", "DASHBOARD_PASSWORD",
        "SECRET_KEY",
    ]  # fmt: skip
    assert env["AUDITQ_SEAL_GRACE"] == "5"
    # The keys are valid and the seal pair matches (load_settings refuses a mismatch).
    keys = {k: env[k] for k in ("AUDITQ_PII_KEY", "AUDITQ_SEAL_KEY", "AUDITQ_SEAL_PUBLIC_KEY")}
    loaded = load_settings(**{k.lower(): v for k, v in keys.items()})
    assert signing.checker(loaded) is not None and loaded.pii_key is not None
    assert env["PORT"] == "5123" and env["REDIS_URL"] == "redis://127.0.0.1:7/0"
    assert env["PYTHONPATH"] == str(REPO)

    # What the environment sets wins; the generated login is the same on the next start.
    dev.env["AUDITQ_ALERT_ALLOW_PRIVATE"] = "false"
    again, _ = dev.children_env(State(tmp_path / "dev.json"), {}, 5123)
    assert again["AUDITQ_ALERT_ALLOW_PRIVATE"] == "false"
    assert again["DASHBOARD_PASSWORD"] == env["DASHBOARD_PASSWORD"]
    assert again["SECRET_KEY"] == env["SECRET_KEY"]
    for name in ("AUDITQ_PII_KEY", "AUDITQ_SEAL_KEY", "AUDITQ_SEAL_PUBLIC_KEY"):
        assert again[name] == env[name]  # kept: stored data stays readable, seals chain on

    # A seal key of one's own: dev generates neither half of the pair.
    dev.env["AUDITQ_SEAL_PUBLIC_KEY"] = "set-by-the-user"
    mine, generated = dev.children_env(State(tmp_path / "dev.json"), {}, 5123)
    assert "AUDITQ_SEAL_KEY" not in mine and "AUDITQ_SEAL_KEY" not in generated
