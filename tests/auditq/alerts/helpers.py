"""Alert test helpers: the service as the dashboard builds it, a stream of a given length,
and real receivers for notifications: an HTTP server that records every request and
answers with scripted statuses, and an SMTP server (aiosmtpd) that records every message.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from aiosmtpd.controller import Controller

from auditq.alerts.repo import Repo
from auditq.alerts.service import AlertService
from auditq.config import load_settings
from auditq.devtools.embedded import HOST, free_port
from auditq.keys import Keys

KEYS = Keys("audit")


def alert_service(repo: Repo, redis_client: redis.Redis | None = None) -> AlertService:
    """The service with the test settings (receivers on 127.0.0.1 are allowed)."""
    settings = load_settings(prefix=KEYS.prefix, heartbeat_ttl=5, alert_allow_private=True)
    return AlertService(repo, redis_client, settings)


def email_channel(svc: AlertService, smtp: SmtpSink, to: str = "ops@example.com") -> dict:
    """An email channel to the SMTP sink (plain SMTP on 127.0.0.1)."""
    config = {
        "host": HOST,
        "port": smtp.port,
        "starttls": False,
        "from": "auditq@example.com",
        "to": to,
    }
    return svc.create_channel({"name": "mail", "kind": "email", "config": config})


def set_queue(client: redis.Redis, length: int) -> None:
    """Make the real stream hold exactly ``length`` entries."""
    current = client.xlen(KEYS.stream)
    if length < current:
        ids = [eid for eid, _ in client.xrange(KEYS.stream, count=current - length)]
        client.xdel(KEYS.stream, *ids)
    elif length > current:
        pipe = client.pipeline(transaction=False)
        for i in range(length - current):
            pipe.xadd(KEYS.stream, {"event": f'{{"action": "probe", "n": {i}}}'})
        pipe.execute()
    assert client.xlen(KEYS.stream) == length


class Receiver:
    """Records each request (path, headers, JSON body, the status it got).

    ``script(503, 503, 200)`` answers the next requests with those statuses in turn, then
    200; ``retry_after`` adds that header to 429/5xx answers.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._script: list[int] = []
        self.retry_after: str | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    status = receiver._script.pop(0) if receiver._script else 200
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "json": json.loads(body) if body else None,
                            "status": status,
                        }
                    )
                payload = b"ok" if status < 300 else b"scripted failure"
                self.send_response(status)
                if receiver.retry_after and (status == 429 or status >= 500):
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._httpd.server_address[1]}"

    def script(self, *statuses: int, retry_after: str | None = None) -> None:
        with self._lock:
            self._script = list(statuses)
            self.retry_after = retry_after

    def bodies(self, path: str | None = None) -> list[Any]:
        return [r["json"] for r in self.requests if path is None or r["path"] == path]

    def ok(self, path: str | None = None) -> list[Any]:
        """Bodies of the requests answered 2xx (the ones that count as delivered)."""
        return [
            r["json"]
            for r in self.requests
            if r["status"] < 300 and (path is None or r["path"] == path)
        ]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class SmtpSink:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) keeping each message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                sink.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                sink.messages.append(
                    email.message_from_bytes(envelope.content, policy=email.policy.default)
                )
                return "250 Message accepted for delivery"

        self.port = free_port()
        self._controller = Controller(Handler(), hostname=HOST, port=self.port)
        self._controller.start()

    @property
    def subjects(self) -> list[str]:
        return [m["Subject"] for m in self.messages]

    def close(self) -> None:
        self._controller.stop()
