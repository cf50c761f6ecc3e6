"""Dashboard latency: the overview page and its polling fragment, empty and with a backlog.

    python bench/dashboard.py [--requests 200] [--backlog 1000000]

The app runs under gunicorn (as in the Procfile) against real Redis and Postgres; a
logged-in client requests the full overview and the htmx fragment (`HX-Request: true`).
Baseline in the same run: `/healthz`, the cheapest route through the same stack.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import httpx
from common import ROOT, save, services, summary, table
from drain import fill

from auditq.devtools.embedded import free_port

PASSWORD = "bench-password"  # noqa: S105


def serve(svc, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITQ_", "SUPABASE_"))}
    env.update(
        REDIS_URL=svc.redis.url,
        DATABASE_URL=svc.dsn,
        AUDITQ_STORE="postgres",
        SECRET_KEY="bench-secret-key-bench-secret-key",
        DASHBOARD_PASSWORD=PASSWORD,
        AUDITQ_ALERTS_IN_WEB="false",
        WEB_CONCURRENCY="2",
        PORT=str(port),
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "dashboard:create_app()",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def logged_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    deadline = time.time() + 30
    while True:
        try:
            page = client.get("/login")
            break
        except httpx.TransportError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    answer = client.post("/login", data={"password": PASSWORD, "csrf_token": token})
    assert answer.status_code in (302, 303), answer.status_code
    return client


def timings(client: httpx.Client, path: str, n: int, **headers: str) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return samples


def measure(client: httpx.Client, n: int, label: str) -> list[list[object]]:
    rows = []
    health = summary(timings(client, "/healthz", n))
    for name, path, headers in (
        ("overview page", "/", {}),
        ("overview fragment (htmx poll)", "/", {"HX-Request": "true"}),
        ("baseline: /healthz", "/healthz", {}),
    ):
        s = summary(timings(client, path, n, **headers))
        rows.append(
            [
                label,
                name,
                f"{s['p50']:.1f}",
                f"{s['p95']:.1f}",
                f"{s['p99']:.1f}",
                s["p95"] / health["p95"],
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    args = parser.parse_args()
    with services() as svc:
        port = free_port()
        web = serve(svc, port)
        try:
            client = logged_in(f"http://127.0.0.1:{port}")
            rows = measure(client, args.requests, "empty queue")
            fill(svc, args.backlog)
            rows += measure(client, args.requests, f"{args.backlog:,} queued")
        finally:
            web.terminate()
            web.wait(30)
    body = table(["queue", "request", "p50 ms", "p95 ms", "p99 ms", "p95 / healthz p95"], rows)
    fragment = [r for r in rows if r[0] != "empty queue" and "fragment" in r[1]][0]
    body += (
        f"\n\nTarget: overview fragment p95 under 50 ms with the backlog: "
        f"**{fragment[3]} ms**, {'met' if float(fragment[3]) < 50 else 'missed'}."
    )
    save(
        "Dashboard latency",
        f"python bench/dashboard.py --requests {args.requests} --backlog {args.backlog}",
        body,
    )


if __name__ == "__main__":
    main()
