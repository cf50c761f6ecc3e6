"""The Heroku deployment: every Procfile command, run as written with the documented
environment, does its job; app.json and .python-version describe the same app.

The commands come from the Procfile itself and run through ``bash -c``, so this test
follows the file.
"""

from __future__ import annotations

import http.client
import json
import os
import runpy
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import pytest
import redis

from auditq.config import Settings, env_name
from auditq.devtools.embedded import HOST, PostgresServer, free_port
from auditq.migrate import MIGRATIONS_DIR
from auditq.queue import connect

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 60.0


def procfile() -> dict[str, str]:
    commands = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def base_env(**extra: str) -> dict[str, str]:
    """A dyno's environment: nothing of ours but what is passed; this Python first on PATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(("AUDITQ_", "SUPABASE_"))
        and key.upper()
        not in {"REDIS_URL", "DATABASE_URL", "SECRET_KEY", "DASHBOARD_PASSWORD", "PORT", "DYNO"}
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


@contextmanager
def process(name: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a Procfile command; SIGTERM it (as Heroku does) and reap its group afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", procfile()[name]],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(check, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()}"
        time.sleep(0.2)


def test_the_procfile_declares_release_web_and_worker() -> None:
    assert procfile() == {
        "release": "python -m auditq migrate",
        "web": 'gunicorn -c gunicorn.conf.py "dashboard:create_app()"',
        "worker": "python -m worker",
    }


def test_release_applies_the_migrations_once(pg_server: PostgresServer, pg_dsn: str) -> None:
    # A database of its own (on the session server, which has Supabase's roles), so the
    # release has everything to apply; then again, as every later deploy runs it.
    name = f"release_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    dsn = pg_server.dsn_for("postgres", database=name)
    try:
        env = base_env(DATABASE_URL=dsn)
        first = subprocess.run(
            ["bash", "-c", procfile()["release"]], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert first.returncode == 0, first.stderr
        with psycopg.connect(dsn) as conn:
            versions = {
                row[0]
                for row in conn.execute("select version from supabase_migrations.schema_migrations")
            }
            assert conn.execute("select to_regclass('public.audit_logs')").fetchone() == (
                "audit_logs",
            )
        expected = {path.name.split("_", 1)[0] for path in MIGRATIONS_DIR.glob("*.sql")}
        assert versions == expected
        again = subprocess.run(
            ["bash", "-c", procfile()["release"]], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert again.returncode == 0, again.stderr
        assert "applied 0 migration(s)" in again.stdout
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'drop database "{name}" with (force)')


def test_release_fails_loudly_without_database_url() -> None:
    result = subprocess.run(
        ["bash", "-c", procfile()["release"]],
        cwd=REPO,
        env=base_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_web_serves_healthz_on_port(redis_url: str, clean_db: str, tmp_path: Path) -> None:
    port = free_port()
    env = base_env(
        PORT=str(port),
        WEB_CONCURRENCY="3",
        REDIS_URL=redis_url,
        DATABASE_URL=clean_db,
        SECRET_KEY="test-secret-key-of-some-length",
        DASHBOARD_PASSWORD="test-password",
    )
    log = tmp_path / "web.log"
    with process("web", env, log) as proc:

        def healthy() -> bool:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            try:
                connection.request("GET", "/healthz")
                return connection.getresponse().status == 200
            except OSError:
                return False
            finally:
                connection.close()

        wait_for(healthy, proc, log)
        wait_for(lambda: log.read_text().count("Booting worker") == 3, proc, log)
        assert f"Listening at: http://0.0.0.0:{port}" in log.read_text()
        # The access log goes to stdout (written just after the response).
        wait_for(lambda: '"GET /healthz HTTP/1.1" 200' in log.read_text(), proc, log)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def test_worker_heartbeats(redis_url: str, clean_db: str, tmp_path: Path) -> None:
    env = base_env(REDIS_URL=redis_url, DATABASE_URL=clean_db, AUDITQ_HEARTBEAT_INTERVAL="0.5")
    client = redis.Redis.from_url(redis_url)
    log = tmp_path / "worker.log"
    with process("worker", env, log) as proc:
        workers_key = f"{Settings().prefix}:workers"
        wait_for(lambda: client.zcard(workers_key) > 0, proc, log)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def test_rediss_urls_accept_herokus_self_signed_certificates() -> None:
    # Heroku Redis presents a self-signed certificate: encrypted, but not verifiable.
    client = connect("rediss://:secret@ec2-1-2-3-4.compute-1.amazonaws.com:6380", timeout=1)
    pool = client.connection_pool
    connection = pool.connection_class(**pool.connection_kwargs)  # built, not connected
    assert type(connection).__name__ == "SSLConnection"
    assert connection.cert_reqs == ssl.CERT_NONE
    assert connection.check_hostname is False
    # Verification stays available to whoever asks for it in the URL.
    strict = connect("rediss://:secret@redis.example.com:6380?ssl_cert_reqs=required", timeout=1)
    pool = strict.connection_pool
    assert pool.connection_class(**pool.connection_kwargs).cert_reqs == ssl.CERT_REQUIRED


def test_app_json_deploys_web_worker_and_redis_with_every_documented_setting() -> None:
    app = json.loads((REPO / "app.json").read_text())
    assert set(app["formation"]) == {"web", "worker"}
    assert any(addon["plan"].startswith("heroku-redis:") for addon in app["addons"])
    env = app["env"]
    for name in (
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
        "DATABASE_URL",
        "DASHBOARD_PASSWORD",
        "METRICS_TOKEN",
        "INGEST_TOKEN",
        "API_TOKEN",
        "SECRET_KEY",
    ):
        assert env[name]["description"], name
    assert env["SECRET_KEY"]["generator"] == "secret"
    # Every variable it sets is one auditq reads (no typo silently ignored).
    known = {env_name(field) for field in Settings.model_fields}
    assert set(env) <= known
    # The release phase needs DATABASE_URL, so a deploy without it must not be possible.
    assert env["DATABASE_URL"].get("required", True) is True


def test_python_version_is_pinned_to_311() -> None:
    # Heroku's Python buildpack reads .python-version; "3.11" means its latest 3.11 patch.
    assert (REPO / ".python-version").read_text().strip() == "3.11"


def gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    for name in (
        "PORT",
        "WEB_CONCURRENCY",
        "DYNO",
        "FORWARDED_ALLOW_IPS",
        "AUDITQ_TRUSTED_PROXIES",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPO / "gunicorn.conf.py"))


def test_gunicorn_conf_follows_herokus_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = gunicorn_conf(monkeypatch, PORT="31337", WEB_CONCURRENCY="5", DYNO="web.1")
    assert conf["bind"] == ["0.0.0.0:31337"]
    assert conf["workers"] == 5
    assert conf["forwarded_allow_ips"] == "*"  # behind Heroku's router only
    assert conf["accesslog"] == "-"
    assert conf["control_socket_disable"] is True


def test_gunicorn_conf_elsewhere_trusts_no_forwarded_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = gunicorn_conf(monkeypatch)
    assert conf["bind"] == ["0.0.0.0:5000"]
    assert conf["workers"] == 2
    assert conf["forwarded_allow_ips"] == ""  # no peer, not even 127.0.0.1


def test_gunicorn_conf_trusts_forwarded_headers_when_told_a_proxy_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same setting ProxyFix follows: one answer to "is there a proxy in front?".
    assert gunicorn_conf(monkeypatch, AUDITQ_TRUSTED_PROXIES="1")["forwarded_allow_ips"] == "*"
    explicit = gunicorn_conf(monkeypatch, DYNO="web.1", AUDITQ_TRUSTED_PROXIES="0")
    assert explicit["forwarded_allow_ips"] == ""
