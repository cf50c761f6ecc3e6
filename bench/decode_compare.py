"""Where the per-event CPU goes in decoding (worker) and in log_many (producer), and what
msgspec would save: numbers for a decision, not a change (auditq/events.py and
auditq/client.py are not changed by this script).

    python bench/decode_compare.py [--events 20000] [--repeat 5]

Worker side, per stream entry: today's ``decode_entry`` (pydantic-core parses and
validates the JSON in one step, then fills a missing id and time) against msgspec decoding
into a Struct with the same constraints, alone and followed by ``AuditEvent.model_construct``
(what the stores take today). Both decoders are first checked to agree: the same values for
valid entries, a refusal for the same invalid ones.

Producer side, per event of a 1,000-event ``log_many()``: validation (``build_event``),
encoding (``encode``), the enqueue round trip (the Lua script), against pipelined XADD of
the same payloads; and msgspec's validate + encode for the same dicts.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import orjson
import redis
from common import save, table
from drain import events

from auditq.devtools.embedded import RedisServer
from auditq.events import (
    AuditEvent,
    EventError,
    build_event,
    decode_entry,
    derived_id,
    encode,
    entry_time,
)
from auditq.keys import Keys
from auditq.queue import Queue

MAX_BYTES = 65_536
Short = Annotated[str, msgspec.Meta(max_length=256)] | None


class WireEvent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """AuditEvent's wire format v1 as a msgspec Struct: the same fields and limits."""

    action: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    id: uuid.UUID | None = None
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    category: Literal["normal", "critical"] = "normal"
    actor_type: Short = None
    actor_id: Short = None
    target_type: Short = None
    target_id: Short = None
    tenant_id: Short = None
    outcome: Literal["success", "failure", "denied"] | None = None
    ip: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    request_id: Short = None
    metadata: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(WireEvent)
_encoder = msgspec.json.Encoder()


def msgspec_decode(entry_id: str, raw: bytes) -> WireEvent:
    if len(raw) > MAX_BYTES:
        raise EventError("event", "too large")
    try:
        event = _decoder.decode(raw)
    except msgspec.DecodeError as error:  # bad JSON, or a ValidationError
        raise EventError("event", str(error)) from None
    if event.ip is not None:
        family = socket.AF_INET6 if ":" in event.ip else socket.AF_INET
        try:
            socket.inet_pton(family, event.ip)
        except OSError:
            raise EventError("ip", "must be an IPv4 or IPv6 address") from None
    if event.id is None:
        event.id = derived_id(entry_id)
    if event.occurred_at is None:
        event.occurred_at = entry_time(entry_id)
    else:
        event.occurred_at = event.occurred_at.astimezone(UTC)
    if event.metadata is None:
        event.metadata = {}
    return event


def msgspec_to_model(entry_id: str, raw: bytes) -> AuditEvent:
    event = msgspec_decode(entry_id, raw)
    return AuditEvent.model_construct(**msgspec.structs.asdict(event))


def stream_entries(n: int) -> list[tuple[str, bytes]]:
    """What the worker reads: producer JSON, every other event without an id or time."""
    entries = []
    for i, event in enumerate(events(n)):
        if i % 2:
            event |= {"id": str(uuid.uuid4()), "occurred_at": "2026-11-29T14:00:00.123456+00:00"}
        entries.append((f"{1764424800000 + i}-0", orjson.dumps(event)))
    return entries


INVALID = [
    b'{"action": ""}',
    b'{"action": "a", "nope": 1}',
    b'{"action": "a", "ip": "999.1.1.1"}',
    b'{"action": "a", "occurred_at": "2026-11-29T14:00:00"}',
    b'{"action": "a", "metadata": [1]}',
    b'{"action": "a", "category": "other"}',
    b'{"action": "' + b"x" * 300 + b'"}',
    b"not json",
    b"[1, 2]",
]


def check_agreement(entries: list[tuple[str, bytes]]) -> None:
    for entry_id, raw in entries[:200]:
        ours = decode_entry(entry_id, {b"event": raw}, MAX_BYTES)
        theirs = msgspec_to_model(entry_id, raw)
        assert ours.model_dump() == theirs.model_dump(), (ours, theirs)

    def pydantic_decode(entry_id: str, raw: bytes) -> AuditEvent:
        return decode_entry(entry_id, {b"event": raw}, MAX_BYTES)

    for raw in INVALID:
        for decode in (pydantic_decode, msgspec_decode):
            try:
                decode("1-0", raw)
            except EventError:
                continue
            raise AssertionError(f"{decode.__name__} accepted {raw!r}")


def per_item_us(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Median over `repeat` runs of fn() (which handles n items), in microseconds per item."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, repeat = args.events, args.repeat

    entries = stream_entries(n)
    check_agreement(entries)
    fields = [(eid, {b"event": raw}) for eid, raw in entries]
    decode_rows = [
        [
            "pydantic-core `decode_entry` (today)",
            per_item_us(lambda: [decode_entry(e, f, MAX_BYTES) for e, f in fields], n, repeat),
        ],
        [
            "msgspec Struct decode",
            per_item_us(lambda: [msgspec_decode(e, r) for e, r in entries], n, repeat),
        ],
        [
            "msgspec decode + AuditEvent.model_construct",
            per_item_us(lambda: [msgspec_to_model(e, r) for e, r in entries], n, repeat),
        ],
    ]
    base = decode_rows[0][1]
    for row in decode_rows:
        row.append(base / row[1])

    dicts = events(1000)
    built = [build_event(d) for d in dicts]
    payloads = [encode(e, MAX_BYTES) for e in built]
    with (
        tempfile.TemporaryDirectory(prefix="auditq-bench-") as tmp,
        RedisServer(Path(tmp) / "redis") as server,
    ):
        client = redis.Redis.from_url(server.url)
        queue = Queue(client, Keys("bench"), max_len=10_000_000)

        def xadd() -> None:
            pipe = client.pipeline(transaction=False)
            for payload in payloads:
                pipe.xadd("bench:xadd", {"event": payload})
            pipe.execute()

        rounds = max(repeat, 5)

        def many(fn: Callable[[], object]) -> float:
            return per_item_us(lambda: [fn() for _ in range(rounds)], rounds * 1000, repeat)

        producer_rows = [
            ["validate: `build_event` (pydantic)", many(lambda: list(map(build_event, dicts)))],
            ["encode: `encode` (model_dump_json)", many(lambda: [encode(e, MAX_BYTES) for e in built])],  # noqa: E501
            ["enqueue: Lua script, 1,000 per call", many(lambda: queue.enqueue([("normal", p) for p in payloads]))],  # noqa: E501
            ["baseline: pipelined XADD, 1,000 per call", many(xadd)],
            ["msgspec: validate + encode the same dicts", many(lambda: [_encoder.encode(msgspec.convert(d, WireEvent)) for d in dicts])],  # noqa: E501
        ]  # fmt: skip
        client.close()
    xadd_us = producer_rows[3][1]
    log_many_us = sum(row[1] for row in producer_rows[:3])
    for row in producer_rows:
        row.append(row[1] / xadd_us)

    body = "Worker: decode and validate one stream entry\n\n" + table(
        ["decoder", "us/event (median)", "speed-up vs today"], decode_rows
    )
    body += (
        "\n\nBoth decoders agree on 200 valid entries (same values) and refuse the same "
        f"{len(INVALID)} invalid ones (empty or long action, unknown field, bad IP, naive "
        "time, metadata not an object, bad category, bad JSON, not an object)."
    )
    body += "\n\nProducer: one `log_many()` of 1,000 events, per event\n\n" + table(
        ["step", "us/event (median)", "x pipelined XADD"], producer_rows
    )
    body += (
        f"\n\n`log_many()` = validate + encode + enqueue = {log_many_us:.1f} us/event, "
        f"{xadd_us / log_many_us:.2f}x the rate of pipelined XADD ({xadd_us:.1f} us/event)."
    )
    save("Decode and producer costs", f"python bench/decode_compare.py --events {n}", body)


if __name__ == "__main__":
    main()
