"""The project's side of bench/run_all.py: each measurement in a throwaway database and namespace
(``bench.sandbox``), through the real ``dramatiq actors.worker`` worker, figures from the audit trail.

    .venv/bin/python -m bench.project enqueue    [--n 2000] [--batch 500]
    .venv/bin/python -m bench.project throughput [--n 2000] [--latency-ms 0] [--chains 1] [--tokens 1]
    .venv/bin/python -m bench.project sync       [--n 1000] [--latency-ms 100] [--chains 1,10] [--tokens 20]
    .venv/bin/python -m bench.project realistic  [--n 1000] [--latency-ms 0]
    .venv/bin/python -m bench.project latency    [--samples 100] [--gap-ms 20-120]
    .venv/bin/python -m bench.project priority   [--low 10000] [--samples 30]
    .venv/bin/python -m bench.project memory     [--n 100000]
    .venv/bin/python -m bench.project recovery   [--in-flight 8]

``realistic`` is a sync as deployed: the default chains (``SYNC_CHAINS``, five) and the simulated
provider's default token lists (``SIMULATED_TOKENS_PER_CHAIN``).  Each wallet is synced twice: a first
sync (nothing stored yet), then, once the cooldown is lifted, a re-sync whose balances and prices equal
the stored snapshot (the pass is well within the price cache's lifetime): the best case of a worker
keeping wallets fresh.  Both passes are measured (``first`` and
``resync``); CPU per sync is the worker's, PostgreSQL's and Redis's over each pass.

Common options: ``--processes/--threads`` (default: the Procfile's 2 x 8), ``--worker-module``
(default ``actors``; a proposal's module to measure it), ``--env NAME=VALUE`` for the worker
(repeatable, e.g. ``--env dramatiq_worker_timeout=100``).  Prints one JSON line.

What "the job starts" means here: ``start_attempt`` has marked the audit row ``running``
(``sync_operations.started_at``, PostgreSQL's clock, the machine's clock as the producer's).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import sys
import time
import uuid
from pathlib import Path

import settings
from bench import sandbox
from bench.common import Worker, emit, idle_gap, latency_summary, parse_gap, server_cpu_seconds, wallets

FINAL = ("succeeded", "failed")


def _conn():
    from storage.pool import get_pool

    return get_pool().connection()


_IDS = ("id = ANY(%s::uuid[]) AND enqueued_at >= coalesce(%s::timestamptz, '-infinity') "
        "AND enqueued_at < coalesce(%s::timestamptz, 'infinity')")


def _ids_params(ids: list[str]) -> tuple:
    """``_IDS``' parameters: the ids and the days their times name (ids of version 7), so the polling
    reads one or two partitions, not all (its PostgreSQL time is counted in the pass).  Computed here,
    not by ``storage``: ``--before`` runs this driver against trees whose ids have no time."""
    times = [value.int >> 80 for value in map(uuid.UUID, ids) if value.version == 7]
    if not times:
        return ids, None, None
    day = dt.timedelta(days=1)
    return (ids, dt.datetime.fromtimestamp(min(times) / 1000, dt.timezone.utc) - day,
            dt.datetime.fromtimestamp(max(times) / 1000, dt.timezone.utc) + day)


def _count_final(user_id: str | None = None, ids: list[str] | None = None) -> int:
    """Final operations: of ``ids`` if given, else of ``user_id`` if given, else all."""
    if ids is not None:
        where, params = "AND " + _IDS, _ids_params(ids)
    elif user_id is not None:
        where, params = "AND user_id = %s", (user_id,)
    else:
        where, params = "", ()
    with _conn() as conn:
        return conn.execute("SELECT count(*) AS n FROM sync_operations WHERE status IN ('succeeded', 'failed') "
                            + where, params).fetchone()["n"]


def _wait_final(total: int, timeout: float, user_id: str | None = None, interval: float = 0.1,
                ids: list[str] | None = None) -> int:
    deadline = time.monotonic() + timeout
    done = _count_final(user_id, ids)
    while done < total and time.monotonic() < deadline:
        time.sleep(interval)
        done = _count_final(user_id, ids)
    return done


def _stats(ids: list[str]) -> dict:
    with _conn() as conn:
        return conn.execute("""
            SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   extract(epoch FROM max(finished_at) - min(started_at))::float AS seconds,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS duration_p50_ms,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS duration_p95_ms,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY queue_wait_ms) AS queue_wait_p50_ms
            FROM sync_operations WHERE """ + _IDS, _ids_params(ids)).fetchone()


def _submit_batches(actors, user_id: str, addresses: list[str], chains: list[int], batch: int, **fields) -> list[str]:
    ids: list[str] = []
    for i in range(0, len(addresses), batch):
        ids += actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": chains, **fields}
                                     for w in addresses[i:i + batch]])
    return ids


def _warm_up(actors, worker: Worker, chains: list[int], timeout: float = 60) -> None:
    """Wait until the worker runs syncs (its processes booted, pools open): a few syncs to completion."""
    worker.wait_children()
    actors.request_syncs([{"user_id": "bench-warmup", "wallet_address": w, "chain_ids": chains}
                          for w in wallets(4 * worker.processes, 90_000_000)])
    if _wait_final(4 * worker.processes, timeout, "bench-warmup", interval=0.05) < 4 * worker.processes:
        raise RuntimeError("the worker did not run the warm-up syncs in time")


def _started_at(op_ids: list[str]) -> dict[str, float]:
    with _conn() as conn:
        rows = conn.execute("SELECT id::text, extract(epoch FROM started_at)::float AS started FROM sync_operations "
                            "WHERE id = ANY(%s::uuid[]) AND started_at IS NOT NULL", (op_ids,)).fetchall()
    return {r["id"]: r["started"] for r in rows}


# --- measurements -----------------------------------------------------------------------------------

def enqueue(args, actors) -> dict:
    chains = [1]
    for w in wallets(20, 80_000_000):  # warm-up: scripts loaded, pools open
        actors.request_sync("bench-warmup", w, chains)
    single = wallets(args.n, 0)
    started = time.perf_counter()
    for w in single:
        actors.request_sync("bench-single", w, chains)
    one_by_one = len(single) / (time.perf_counter() - started)
    batch = wallets(args.n, 10_000_000)
    started = time.perf_counter()
    _submit_batches(actors, "bench-batch", batch, chains, args.batch)
    batched = len(batch) / (time.perf_counter() - started)
    # The bare Dramatiq send of the project's own broker (all its middleware, no audit row), for reference.
    actor = actors.worker.SYNC_ACTORS["normal"]
    started = time.perf_counter()
    for _ in range(args.n):
        actor.send("00000000-0000-0000-0000-000000000000")
    own_send = args.n / (time.perf_counter() - started)
    actors.worker.broker.flush_all()
    return {"request_sync_per_s": one_by_one, "request_syncs_per_s": batched, "project_broker_send_per_s": own_send,
            "jobs": args.n, "batch": args.batch}


def _pass(args, actors, worker: Worker, user_id: str, addresses: list[str], chains: list[int]) -> dict:
    """Submit one sync per address (the worker waiting, warmed up) and measure them to the last finish:
    operations per second from the first start to the last finish, CPU per operation by process group."""
    # The statistics of a database in service, which autovacuum keeps: the sandbox's database is new, and
    # plans made on its empty tables (the warm-up's, or the first pass's) would be kept until autovacuum
    # came round, minutes into a pass of seconds.
    with _conn() as conn:
        conn.execute("ANALYZE")
    # Prefilled while the warmed-up worker waits: the figure is the pipeline's, not the producer's.
    ids = _submit_batches(actors, user_id, addresses, chains, 1000)
    cpu_before, servers_before = worker.cpu_seconds(), server_cpu_seconds()
    done = _wait_final(len(addresses), args.timeout, interval=0.2, ids=ids)
    cpu = worker.cpu_seconds() - cpu_before
    servers = {k: v - servers_before[k] for k, v in server_cpu_seconds().items()}
    stats = _stats(ids)
    rate = (stats["succeeded"] + stats["failed"]) / stats["seconds"]
    per_job = {"worker_cpu_ms_per_job": 1000 * cpu / max(1, done),
               "postgres_cpu_ms_per_job": 1000 * servers["postgres"] / max(1, done),
               "redis_cpu_ms_per_job": 1000 * servers["redis-server"] / max(1, done)}
    result = {"jobs_per_s": rate, "jobs": len(addresses), "completed": done, "succeeded": stats["succeeded"],
              "failed": stats["failed"], "duration_p50_ms": stats["duration_p50_ms"],
              "duration_p95_ms": stats["duration_p95_ms"], **per_job, "cpu_ms_per_job": sum(per_job.values())}
    if args.latency_ms:
        ideal = args.processes * args.threads / (args.latency_ms / 1000)
        result.update(ideal_per_s=ideal, fraction_of_ideal=rate / ideal)
    return result


def throughput(args, actors) -> dict:
    """Operations per second from the first start to the last finish, the queue prefilled."""
    chains = [int(c) for c in args.chains.split(",")]
    with Worker(args.worker_module, processes=args.processes, threads=args.threads, env=args.worker_env,
                log_path=args.log) as worker:
        _warm_up(actors, worker, chains)
        result = _pass(args, actors, worker, "bench", wallets(args.n, 0), chains)
        rss = worker.rss_kib()
    result.update(latency_ms=args.latency_ms, chains=len(chains), tokens=args.tokens, rss_kib=rss,
                  worker=f"{args.processes}x{args.threads}", worker_module=args.worker_module)
    if args.latency_ms:
        result.update(in_flight=args.processes * args.threads)
    return result


def realistic(args, actors) -> dict:
    """A first sync, then a re-sync of the same ``args.n`` wallets: five chains, the default token lists.

    The cooldown is lifted (``SYNC_COOLDOWN_SECONDS=0`` for this run, set in :func:`main`) so the
    re-sync is admitted at once; the simulated balances are deterministic, so a re-sync finds the
    snapshot unchanged."""
    chains = [int(c) for c in args.chains.split(",")]
    addresses = wallets(args.n, 0)
    with Worker(args.worker_module, processes=args.processes, threads=args.threads, env=args.worker_env,
                log_path=args.log) as worker:
        _warm_up(actors, worker, chains)
        # One user for both passes: a wallet's snapshot is its user's, and the re-sync is of the same one.
        first = _pass(args, actors, worker, "bench-realistic", addresses, chains)
        resync = _pass(args, actors, worker, "bench-realistic", addresses, chains)
    return {"first": first, "resync": resync, "latency_ms": args.latency_ms, "chains": len(chains),
            "tokens": args.tokens, "worker": f"{args.processes}x{args.threads}", "worker_module": args.worker_module,
            "first_jobs_per_s": first["jobs_per_s"], "first_cpu_ms_per_job": first["cpu_ms_per_job"],
            # The headline figures are the steady state's: the re-sync.
            **{k: v for k, v in resync.items() if k.endswith("_per_job") or k in ("jobs_per_s", "fraction_of_ideal")}}


def latency(args, actors) -> dict:
    """Idle start latency: one request at a time, an idle gap between them; request -> ``started_at``."""
    gap = parse_gap(args.gap_ms)
    samples: list[float] = []
    with Worker(args.worker_module, processes=args.processes, threads=args.threads, env=args.worker_env,
                log_path=args.log) as worker:
        _warm_up(actors, worker, [1])
        for w in wallets(args.samples, 0):
            idle_gap(gap)
            sent_at = time.time()
            op_id = actors.request_sync("bench-latency", w, [1])
            deadline = time.monotonic() + 10
            while True:
                started = _started_at([op_id]).get(op_id)
                if started is not None:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("a sync did not start within 10 s")
                time.sleep(0.005)
            samples.append((started - sent_at) * 1000)
    return {**latency_summary(samples), "worker": f"{args.processes}x{args.threads}",
            "worker_module": args.worker_module, "worker_env": args.worker_env,
            "producer_module": args.producer_module}


def priority(args, actors) -> dict:
    """Start latency of ``high`` requests while ``args.low`` ``low`` ones are queued ahead of them."""
    chains = [int(c) for c in args.chains.split(",")]
    with Worker(args.worker_module, processes=args.processes, threads=args.threads, env=args.worker_env,
                log_path=args.log) as worker:
        _warm_up(actors, worker, chains)
        _submit_batches(actors, "bench-low", wallets(args.low, 0), chains, 1000, priority="low", trigger="scheduled")
        time.sleep(1.0)  # the backlog is being worked on
        sent: dict[str, float] = {}
        for w in wallets(args.samples, 50_000_000):
            time.sleep(args.interval_ms / 1000)
            sent_at = time.time()
            sent[actors.request_sync("bench-high", w, chains, priority="high")] = sent_at
        deadline = time.monotonic() + 60
        started = _started_at(list(sent))
        while len(started) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
            started = _started_at(list(sent))
        low_left = actors.worker.broker.client.llen(f"{actors.worker.broker.namespace}:sync_low")
        low_done = _count_final("bench-low")
    samples = [(started[op] - sent[op]) * 1000 for op in sent if op in started]
    return {**latency_summary(samples), "not_started": len(sent) - len(samples), "low_queued": args.low,
            "low_still_queued_at_the_end": low_left, "low_done_meanwhile": low_done,
            "worker": f"{args.processes}x{args.threads}", "worker_module": args.worker_module}


def memory(args, actors) -> dict:
    """Worker RSS over ``args.n`` no-op syncs, fed in batches so the backlog stays under 5,000."""
    chains = [1]
    marks = {int(args.n * f): None for f in (0.1, 0.5, 1.0)}
    samples: list[tuple[int, int]] = []
    with Worker(args.worker_module, processes=args.processes, threads=args.threads, env=args.worker_env,
                log_path=args.log) as worker:
        _warm_up(actors, worker, chains)
        rss_start = sum(worker.rss_kib())
        submitted, done = 0, 0
        addresses = wallets(args.n, 0)
        deadline = time.monotonic() + args.timeout
        while done < args.n and time.monotonic() < deadline:
            if submitted < args.n and submitted - done < 5000:
                batch = addresses[submitted:submitted + 1000]
                _submit_batches(actors, "bench", batch, chains, 1000)
                submitted += len(batch)
            else:
                time.sleep(0.25)
            done = _count_final("bench")
            rss = sum(worker.rss_kib())
            samples.append((done, rss))
            for mark in marks:
                if marks[mark] is None and done >= mark:
                    marks[mark] = rss
    at_10pct, at_50pct, at_end = (marks[m] for m in sorted(marks))
    return {"syncs": args.n, "completed": done, "rss_start_kib": rss_start,
            "rss_at_10pct_kib": at_10pct, "rss_at_50pct_kib": at_50pct, "rss_end_kib": at_end,
            "growth_10pct_to_end": (at_end - at_10pct) / at_10pct if at_end and at_10pct else None,
            "worker": f"{args.processes}x{args.threads}", "worker_module": args.worker_module}


def recovery(args, actors) -> dict:
    """SIGKILL a worker group while ``args.in_flight`` syncs run; a new worker is started at once.
    Reports how long after the kill each interrupted operation started again."""
    chains = [1]
    env = {**args.worker_env, "SIMULATED_LATENCY_MS": "3000"}
    victim = Worker(args.worker_module, processes=1, threads=args.in_flight, env=env, log_path=args.log)
    try:
        victim.wait_children()
        ids = actors.request_syncs([{"user_id": "bench-kill", "wallet_address": w, "chain_ids": chains}
                                    for w in wallets(args.in_flight, 0)])
        deadline = time.monotonic() + 60
        while len(_started_at(ids)) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        with _conn() as conn:
            before = {r["id"]: r["attempts"] for r in conn.execute(
                "SELECT id::text, attempts FROM sync_operations WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()}
        killed_at = time.time()
        victim.kill9()
    finally:
        victim.stop()
    restarts: dict[str, float] = {}
    with Worker(args.worker_module, processes=1, threads=args.in_flight, env=env, log_path=args.log):
        deadline = time.monotonic() + args.timeout
        while len(restarts) < len(ids) and time.monotonic() < deadline:
            with _conn() as conn:
                for r in conn.execute("SELECT id::text, attempts, extract(epoch FROM started_at)::float AS started "
                                      "FROM sync_operations WHERE id = ANY(%s::uuid[])", (ids,)).fetchall():
                    if r["id"] not in restarts and r["attempts"] > before[r["id"]]:
                        restarts[r["id"]] = r["started"] - killed_at
            time.sleep(0.1)
    values = sorted(restarts.values())
    return {"in_flight_killed": len(ids), "restarted": len(values),
            "restart_p50_s": values[len(values) // 2] if values else None, "restart_max_s": values[-1] if values else None,
            "lease_ms": int(os.environ.get("SYNC_LEASE_MS") or 8000),
            "heartbeat_timeout_ms": int(os.environ.get("BROKER_HEARTBEAT_TIMEOUT_MS") or 8000)}


MODES = {"enqueue": enqueue, "throughput": throughput, "sync": throughput, "realistic": realistic,
         "latency": latency, "priority": priority, "memory": memory, "recovery": recovery}

#: Per mode: the simulated provider's latency (ms), chains and tokens per chain, unless given.
DEFAULTS = {"sync": (100, "1,10", 20), "priority": (100, "1,10", 20),
            "realistic": (0, settings.VARIABLES["SYNC_CHAINS"].default,
                          int(settings.VARIABLES["SIMULATED_TOKENS_PER_CHAIN"].default))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--latency-ms", type=int)
    parser.add_argument("--chains")
    parser.add_argument("--tokens", type=int)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--gap-ms", default="20-120")
    parser.add_argument("--low", type=int, default=10_000)
    parser.add_argument("--interval-ms", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--worker-module", default="actors.worker")
    parser.add_argument("--producer-module", help="a module imported before actors in this (producer) process, "
                                                     "e.g. a proposal's producer side")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the worker processes")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of producer and worker")
    parser.add_argument("--log", type=Path, help="append the worker's output to this file")
    args = parser.parse_args(argv)
    latency_ms, chains, tokens = DEFAULTS.get(args.mode, (0, "1", 1))
    args.latency_ms = latency_ms if args.latency_ms is None else args.latency_ms
    args.chains = args.chains or chains
    args.tokens = args.tokens or tokens
    args.worker_env = dict(item.split("=", 1) for item in args.env)
    env = {"SIMULATED_LATENCY_MS": str(args.latency_ms), "SIMULATED_TOKENS_PER_CHAIN": str(args.tokens),
           "SIMULATED_FAILURE_RATE": "0", "LOG_LEVEL": args.log_level, "DB_POOL_MAX": str(max(8, args.threads))}
    if args.mode == "realistic":
        env["SYNC_COOLDOWN_SECONDS"] = "0"
    with sandbox.enter(**env):
        if args.producer_module:
            importlib.import_module(args.producer_module)
        import actors.worker

        try:
            result = MODES[args.mode](args, actors)
        finally:
            actors.worker.broker.client.close()
    emit({"system": "project", "mode": args.mode, **result})


if __name__ == "__main__":
    sys.exit(main())
