"""Bare Dramatiq: the peer the project is measured against, on the same Redis, in a namespace of its own.

A plain ``RedisBroker`` with Dramatiq's default middleware and three actors that do
nothing but record when they ran: none of the project's validation, dedup, audit
trail, leases or holdings.

As a worker (``BENCH_BARE_NAMESPACE`` names the Redis namespace)::

    BENCH_BARE_NAMESPACE=bench-bare-x .venv/bin/dramatiq bench.bare_dramatiq --processes 2 --threads 8

As a driver (starts and stops that worker itself; prints one JSON line)::

    .venv/bin/python -m bench.bare_dramatiq enqueue    [--n 2000] [--batch 500]
    .venv/bin/python -m bench.bare_dramatiq throughput [--n 2000] [--work-ms 0] [--processes 2] [--threads 8]
    .venv/bin/python -m bench.bare_dramatiq latency    [--samples 100] [--gap-ms 20-120]

Progress is reported without a Redis call per message: each worker process counts in
memory and a thread publishes ``count first_start last_end`` every 20 ms; only the
latency probe writes one result per message (after its start was measured).
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

if __name__ == "__main__" and not os.environ.get("BENCH_BARE_NAMESPACE"):
    os.environ["BENCH_BARE_NAMESPACE"] = f"bench-bare-{uuid.uuid4().hex[:10]}"  # the driver's own, passed to its worker
NAMESPACE = os.environ.get("BENCH_BARE_NAMESPACE", "bench-bare-dramatiq")
QUEUE = "bench"
PROGRESS_KEY = f"{NAMESPACE}:bench:progress"
LATENCY_KEY = f"{NAMESPACE}:bench:latency"

_client = redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
broker = RedisBroker(client=_client, namespace=NAMESPACE)
dramatiq.set_broker(broker)


class _Progress:
    """This process's count of finished messages, and the first start and last end (epoch seconds)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.first = None
        self.last = None
        self.pid = None

    def started(self) -> None:
        if self.first is None or self.pid != os.getpid():
            with self.lock:
                if self.pid != os.getpid():  # first message in this (forked) process
                    self.pid, self.count, self.first, self.last = os.getpid(), 0, time.time(), None
                    threading.Thread(target=self._publish, name="bench-progress", daemon=True).start()

    def finished(self) -> None:
        with self.lock:
            self.count += 1
            self.last = time.time()

    def _publish(self) -> None:
        client = redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
        while True:
            with self.lock:
                value = f"{self.count} {self.first} {self.last}"
            client.hset(PROGRESS_KEY, str(os.getpid()), value)
            time.sleep(0.02)


_progress = _Progress()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(sent_at: float) -> None:
    _progress.started()
    _progress.finished()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def sleep_10ms(sent_at: float) -> None:
    _progress.started()
    time.sleep(0.01)
    _progress.finished()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def latency_probe(sent_at: float) -> None:
    waited_ms = (time.time() - sent_at) * 1000  # the job has started: measured before anything else
    broker.client.rpush(LATENCY_KEY, f"{waited_ms:.3f}")


# --- the driver -------------------------------------------------------------------------------------

def _worker_env() -> dict[str, str]:
    return {"BENCH_BARE_NAMESPACE": NAMESPACE}


def _enqueue(args) -> dict:
    noop.send(time.time())  # warm-up: scripts loaded, connection open
    started = time.perf_counter()
    for _ in range(args.n):
        noop.send(time.time())
    one_by_one = args.n / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(0, args.n, args.batch):
        dramatiq.group([noop.message(time.time()) for _ in range(min(args.batch, args.n - i))]).run()
    batched = args.n / (time.perf_counter() - started)
    return {"send_per_s": one_by_one, "group_run_per_s": batched, "jobs": args.n, "batch": args.batch}


def _throughput(args) -> dict:
    from bench.common import Worker, server_cpu_seconds

    actor = sleep_10ms if args.work_ms else noop
    for _ in range(args.n):  # prefilled before the worker starts, with the broker's own enqueue
        actor.send(0.0)
    with Worker("bench.bare_dramatiq", processes=args.processes, threads=args.threads, env=_worker_env()) as worker:
        worker.wait_children()
        cpu_before, servers_before = worker.cpu_seconds(), server_cpu_seconds()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            rows = [v.decode().split() for v in broker.client.hgetall(PROGRESS_KEY).values()]
            if sum(int(r[0]) for r in rows) >= args.n:
                break
            time.sleep(0.05)
        time.sleep(0.05)
        rows = [v.decode().split() for v in broker.client.hgetall(PROGRESS_KEY).values()]
        rss = worker.rss_kib()
        cpu = worker.cpu_seconds() - cpu_before
        redis_cpu = server_cpu_seconds()["redis-server"] - servers_before["redis-server"]
    done = sum(int(r[0]) for r in rows)
    first = min(float(r[1]) for r in rows if r[1] != "None")
    last = max(float(r[2]) for r in rows if r[2] != "None")
    return {"jobs_per_s": done / (last - first), "jobs": args.n, "completed": done, "work_ms": args.work_ms,
            "worker": f"{args.processes}x{args.threads}", "rss_kib": rss,
            "worker_cpu_ms_per_job": 1000 * cpu / max(1, done), "redis_cpu_ms_per_job": 1000 * redis_cpu / max(1, done)}


def _latency(args) -> dict:
    from bench.common import Worker, idle_gap, latency_summary, parse_gap

    gap = parse_gap(args.gap_ms)
    samples: list[float] = []
    with Worker("bench.bare_dramatiq", processes=args.processes, threads=args.threads, env=_worker_env()):
        for i in range(-3, args.samples):  # three warm-up probes first (the first waits for the worker's boot)
            if i >= -2:
                idle_gap(gap)
            latency_probe.send(time.time())
            answer = broker.client.blpop([LATENCY_KEY], timeout=30 if i == -3 else 10)
            if answer is None:
                raise RuntimeError("a probe did not start in time")
            if i >= 0:
                samples.append(float(answer[1]))
    return {**latency_summary(samples), "worker": f"{args.processes}x{args.threads}",
            "worker_timeout_ms": int(os.environ.get("dramatiq_worker_timeout", 1000))}


def main() -> None:
    import argparse

    from bench.common import delete_prefix, emit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["enqueue", "throughput", "latency"])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--work-ms", type=int, default=0, choices=[0, 10])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--gap-ms", default="20-120")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    try:
        result = {"throughput": _throughput, "enqueue": _enqueue, "latency": _latency}[args.mode](args)
    finally:
        delete_prefix(broker.client, NAMESPACE + ":")
    emit({"system": "dramatiq", "mode": args.mode, **result})


if __name__ == "__main__":
    main()
