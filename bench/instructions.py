"""Instructions per event, counted by valgrind (callgrind): the worker's drain against the
raw baselines' client, in one run.

    python bench/instructions.py [--events 3000]

On this shared two-core machine the wall time and even the CPU time of the same code
swing by a third from one run to the next (bench/RESULTS.md). callgrind counts the
instructions the Python process executes instead: the worker's count repeats within about
1 % whatever else the machine is doing (the raw PostgREST client's, a small count whose
socket reads depend on timing, within about 8 %). A change to the worker's path that the
drain benchmarks cannot tell from the noise shows here.

Each figure is (the instructions of a run over EVENTS queued events - those of the same
run over none) / EVENTS, so start-up, imports and connecting cancel out:
- the worker: one in-process pipelined ``Drain.run`` (the real Queue, BatchInserter and
  store against real servers, batches of 1,000), per store, and on the postgres store
  with personal fields encrypted (every actor's data key made beforehand and cached in
  set-up: the steady state);
- the baselines' client: bench/drain.py's raw COPY at its best and raw PostgREST bulk
  POST, over the same rows (their preparation counted out in the same way).
Only this process is counted: Redis, Postgres, PostgREST and nginx are not. Needs valgrind
(Debian's package).
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from types import SimpleNamespace

from common import Services, save, services, table
from drain import fill, raw_copy, raw_postgrest, truncate

from auditq.config import Settings
from auditq.events import build_event, event_row
from auditq.keys import Keys
from auditq.pii.writer import sealer
from auditq.queue import Queue, connect
from auditq.stats import Stats
from auditq.stores.postgres import PostgresStore
from auditq.stores.supabase import SupabaseStore
from worker.app import YOUNG_OBJECTS
from worker.batching import AdaptiveBatch
from worker.drain import Drain
from worker.heartbeat import WorkerStatus
from worker.insert import BatchInserter

ACTORS = 5000  # bench/drain.py's rows: actor u_<i % 5000>
CASES = {  # name: (what runs, the baseline it is compared with)
    "raw COPY (postgres baseline)": ("raw-copy", None),
    "raw PostgREST POST (supabase baseline)": ("raw-postgrest", None),
    "worker, postgres store": ("worker-postgres", "raw COPY (postgres baseline)"),
    "worker, supabase store": ("worker-supabase", "raw PostgREST POST (supabase baseline)"),
    "worker, postgres store, personal fields encrypted (keys cached)": (
        "worker-postgres-pii",
        "worker, postgres store",
    ),
}


def child(mode: str, events: int) -> None:
    """One counted run (under valgrind): set up, then drain or insert ``events``."""
    env = os.environ
    svc = SimpleNamespace(
        dsn=env["BENCH_DSN"],
        supabase=SimpleNamespace(url=env["BENCH_SUPABASE_URL"], service_key=env["BENCH_KEY"]),
    )
    if mode.startswith("raw-"):
        insert = (raw_copy if mode == "raw-copy" else raw_postgrest)(svc, int(env["BENCH_ROWS"]))
        if events:
            insert()
        return
    drain = worker_drain(mode, svc, env["BENCH_REDIS_URL"], env.get("BENCH_PII_KEY"))
    if events:
        drain()


def worker_drain(
    mode: str, svc: SimpleNamespace, redis_url: str, pii_key: str | None
) -> Callable[[], None]:
    """A pipelined drain of what is queued, set up as `python -m worker` sets it up."""
    client = connect(redis_url)
    keys = Keys("audit")
    queue = Queue(client, keys, max_len=10_000_000)
    queue.ensure_group()
    if mode == "worker-supabase":
        store = SupabaseStore(svc.supabase.url, svc.supabase.service_key)
    else:
        store = PostgresStore(svc.dsn)
    store.ping()
    sizer = AdaptiveBatch(
        start=1000, minimum=1000, maximum=1000, max_bytes=4_000_000, target_ms=600_000
    )
    status = WorkerStatus(stopping=threading.Event(), batch_size=sizer.size, pid=os.getpid())
    seal = None
    if pii_key:
        seal = sealer(Settings(pii_key=pii_key), store)
        # Every actor's data key read and unwrapped now, in set-up: the drain then counts
        # the steady state (keys cached), not one key read per event of a short run.
        warm = [build_event({"action": "warm", "actor_id": f"u_{i}", "ip": "192.0.2.1"})
                for i in range(ACTORS)]  # fmt: skip
        seal([event_row(event, "queue") for event in warm])
    inserter = BatchInserter(
        queue, Stats(client, keys), store, sizer, status,
        max_event_bytes=65_536, retry_base=0.1, retry_max=0.5, seal=seal,
    )  # fmt: skip
    gc.freeze()  # as worker/app.py does once started
    gc.set_threshold(YOUNG_OBJECTS)
    return Drain(queue, inserter, budget=600).run


def counted(mode: str, events: int, env: dict[str, str]) -> int:
    """The instructions of one child run over ``events`` (0: set-up only)."""
    command = [sys.executable, __file__, "--child", mode, "--events", str(events)]
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    run = subprocess.run(valgrind + command, env=env, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode or not found:
        raise SystemExit(f"{mode} failed under valgrind:\n{run.stderr[-3000:]}")
    return int(found.group(1))


def per_event(svc: Services, mode: str, n: int, env: dict[str, str]) -> float:
    def prepare() -> None:
        if mode.startswith("worker-"):
            truncate(svc.dsn)
            fill(svc, n)

    prepare()
    setup = counted(mode, 0, env)
    prepare()
    return (counted(mode, n, env) - setup) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.events)
        return
    n = args.events
    with services() as svc:
        env = dict(
            os.environ,
            BENCH_DSN=svc.dsn,
            BENCH_REDIS_URL=svc.redis.url,
            BENCH_SUPABASE_URL=svc.supabase.url,
            BENCH_KEY=svc.supabase.service_key,
            BENCH_ROWS=str(n),
        )
        counts: dict[str, float] = {}
        for name, (mode, _) in CASES.items():
            case_env = env
            if mode == "worker-postgres-pii":
                case_env = env | {"BENCH_PII_KEY": base64.b64encode(os.urandom(32)).decode()}
                # The actors' data keys made first (uncounted): both counted runs find them.
                subprocess.run(
                    [sys.executable, __file__, "--child", mode, "--events", "0"],
                    env=case_env,
                    check=True,
                )
            counts[name] = per_event(svc, mode, n, case_env)
            print(f"{name}: {counts[name]:,.0f} instructions/event", flush=True)
    rows = [
        [name, f"{counts[name]:,.0f}", f"{counts[name] / counts[base]:.2f}" if base else ""]
        for name, (_, base) in CASES.items()
    ]
    body = table(["client", "instructions/event", "x the row it is compared with"], rows)
    body += (
        f"\n\n{n:,} events (bench/drain.py's rows); the worker in batches of 1,000. Compared "
        "with: each store's worker with its raw baseline's client, encryption on with off. "
        "Only the Python process is counted, not the servers."
    )
    save("Instructions per event", f"python bench/instructions.py --events {n}", body)


if __name__ == "__main__":
    main()
