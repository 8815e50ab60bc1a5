"""How long a scheduler tick takes to select and enqueue, and that the ``low`` backlog stays bounded.

    .venv/bin/python -m bench.scheduler_tick [--wallets 20000] [--active-share 0.1]
                                             [--worker-seconds 60] [--tick-every 5]

Runs in a throwaway database and Redis namespace, with the default scheduler settings
(``SCHEDULER_MAX_PER_TICK`` 5,000, ``SCHEDULER_BACKLOG_LIMIT`` 10,000, batches of 500):

1. **Bootstrap, no worker**: ``--wallets`` tracked wallets, never synced, so all stale
   (``--active-share`` of them in the active tier).  Ticks run back to back (each as the real
   actor runs it: claim, backlog, select, ``request_syncs`` in batches, record); nothing drains
   the queue, so with more stale wallets than the limit the backlog must stop at the limit.
2. **With a worker** (``dramatiq actors.worker``, 2 processes x 8 threads, simulated provider at 100 ms
   per chain call) for ``--worker-seconds``: a tick every ``--tick-every`` seconds (a minute in
   production, compressed here) while the worker drains; the backlog is sampled every 0.25 s.
3. **Steady state**: every wallet synced at a plausible time (active ones within their 5
   minutes, idle ones within their day), so a tick finds what falls due in a minute; the
   selection's plan is printed (``--explain``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import sandbox

ROOT = Path(__file__).resolve().parent.parent


def seed(conn, wallets: int, active_share: float) -> None:
    conn.execute("""
        INSERT INTO tracked_wallets (user_id, wallet_address, chain_ids, last_requested_at)
        SELECT 'bench-user-' || (i %% 4000), '0x' || lpad(to_hex(i), 40, '0'), '{1,10}',
               CASE WHEN i <= %(active)s THEN now() - (i %% 1440) * interval '1 minute' END
        FROM generate_series(1, %(n)s) AS i""", {"n": wallets, "active": int(wallets * active_share)})
    conn.execute("ANALYZE tracked_wallets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wallets", type=int, default=20_000)
    parser.add_argument("--active-share", type=float, default=0.1)
    parser.add_argument("--worker-seconds", type=float, default=60)
    parser.add_argument("--tick-every", type=float, default=5)
    parser.add_argument("--explain", action="store_true", help="print the plan of the steady-state selection")
    args = parser.parse_args()

    with sandbox.enter(SIMULATED_LATENCY_MS="100", SIMULATED_FAILURE_RATE="0", LOG_LEVEL="WARNING",
                       SYNC_CHAINS="1,10"):
        import actors.worker
        from actors.services import scheduler
        from storage.pool import get_pool
        from storage.queries import QUERIES

        cfg = actors.services.intake.context.cfg()
        policy = scheduler.TickPolicy.from_settings(cfg)
        with get_pool().connection() as conn:
            conn.autocommit = True
            seed(conn, args.wallets, args.active_share)

        minute = [dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)]

        def tick() -> dict:
            minute[0] += dt.timedelta(minutes=1)
            started = time.perf_counter()
            report = scheduler.run_resync_tick(minute[0], scheduler_id="bench", policy=policy)
            total_ms = (time.perf_counter() - started) * 1000
            d = report.details
            return {"stale": report.stale_count, "requested": report.requested_count,
                    "held_back": report.held_back_count, "reason": d["reason"], "backlog_before": report.backlog,
                    "backlog_after": d.get("backlog_after"), "select_ms": d.get("select_ms"),
                    "enqueue_ms": d.get("enqueue_ms"), "tick_ms": round(total_ms, 1)}

        print(f"{args.wallets:,} tracked wallets ({args.active_share:.0%} active tier), never synced; "
              f"max {policy.max_per_tick:,}/tick in batches of {policy.batch_size}, "
              f"backlog limit {policy.backlog_limit:,}; {os.cpu_count()} CPUs\n")
        print("1. bootstrap, no worker: ticks back to back")
        bootstrap = [tick() for _ in range(4)]
        show(bootstrap)

        running: list[dict] = []
        samples: list[int] = []
        if args.worker_seconds > 0:
            print(f"\n2. with a worker (2 processes x 8 threads, 100 ms per chain call), a tick every "
                  f"{args.tick_every:g} s for {args.worker_seconds:g} s")
            running, samples = with_worker(tick, lambda: scheduler.low_backlog(actors.worker.broker.client, cfg.sync.namespace),
                                           seconds=args.worker_seconds, every=args.tick_every)
            show(running)
            with get_pool().connection() as conn:
                done = conn.execute("SELECT count(*) FILTER (WHERE status = 'succeeded') AS ok, count(*) AS n "
                                    "FROM sync_operations").fetchone()
            print(f"   low backlog sampled every 0.25 s: max {max(samples):,} (limit {policy.backlog_limit:,}), "
                  f"min {min(samples):,}; {done['ok']:,} of {done['n']:,} scheduled syncs succeeded meanwhile")

        print("\n3. steady state: every wallet synced within its interval; a tick finds what fell due")
        actors.worker.broker.flush_all()
        client = actors.worker.broker.client
        for family in ("sync:inflight", "sync:recent"):  # what the drained jobs would have released
            keys = list(client.scan_iter(match=f"{cfg.sync.namespace}:{family}:*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start:start + 1000])
        with get_pool().connection() as conn:
            conn.autocommit = True
            conn.execute("UPDATE sync_operations SET status = 'succeeded', finished_at = now() "
                         "WHERE status IN ('queued', 'running', 'retrying')")
            conn.execute("""
                UPDATE tracked_wallets SET
                    last_success_at = now() - CASE WHEN last_requested_at IS NOT NULL
                        THEN (random() * 305) * interval '1 second'      -- active: within 5 min
                        ELSE (random() * 86460) * interval '1 second' END,  -- idle: within a day
                    consecutive_failures = 0""")
            conn.execute("VACUUM ANALYZE tracked_wallets")
            if args.explain:
                rules = {**policy.staleness.params(), "limit": policy.max_per_tick}
                plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + QUERIES[
                    "select_stale_wallets"], rules).fetchall()
                print("\n".join("   " + r["QUERY PLAN"] for r in plan))
        steady = [tick() for _ in range(3)]
        show(steady)

    result = {
        "wallets": args.wallets, "cpus": os.cpu_count(),
        "bootstrap_tick_ms": [t["tick_ms"] for t in bootstrap],
        "bootstrap_backlog_after": [t["backlog_after"] for t in bootstrap],
        "worker_ticks": len(running), "worker_backlog_max": max(samples, default=None),
        "backlog_limit": policy.backlog_limit,
        "steady_tick_ms_median": statistics.median(t["tick_ms"] for t in steady),
        "steady_select_ms_median": statistics.median(t["select_ms"] for t in steady),
    }
    print("\n" + json.dumps(result))


def with_worker(tick, backlog, *, seconds: float, every: float) -> tuple[list[dict], list[int]]:
    """Run a real worker for ``seconds``, a tick every ``every`` seconds, sampling the backlog every 0.25 s."""
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "dramatiq"), "actors.worker", "--processes", "2", "--threads", "8"],
        cwd=ROOT, env=os.environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            samples.append(backlog())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ticks = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ticks.append(tick())
            time.sleep(every)
    finally:
        stop.set()
        sampler.join()
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    return ticks, samples


def show(ticks: list[dict]) -> None:
    print(f"   {'tick':>4} {'stale':>7} {'requested':>9} {'held back':>9} {'backlog':>15} "
          f"{'select ms':>9} {'enqueue ms':>10} {'tick ms':>8}  reason")
    for n, t in enumerate(ticks, 1):
        backlog = f"{t['backlog_before']:,} -> {t['backlog_after']:,}"
        print(f"   {n:>4} {t['stale']:>7,} {t['requested']:>9,} {t['held_back']:>9,} {backlog:>15} "
              f"{t['select_ms']:>9} {t['enqueue_ms']:>10} {t['tick_ms']:>8}  {t['reason']}")


if __name__ == "__main__":
    main()
