"""Chaos run: thousands of syncs while workers are SIGKILLed, Redis and PostgreSQL restarted.

    .venv/bin/python -m bench.chaos [--syncs 2000] [--wallets 1000] [--workers 3] [--kill-every 5]

Everything runs on servers of its own (a Redis with AOF, a PostgreSQL cluster, both on free
loopback ports, in a temporary directory) and stops by itself.  The simulated provider fails 20%
of chain reads.  While requests flow, a random worker is killed with SIGKILL every few seconds (and
a new one started), Redis is killed and restarted once, PostgreSQL stopped and restarted once.
Then it waits for every accepted operation to be final and prints:

- requests accepted, and operations in each final status;
- operations lost (accepted, but not final at the end): must be 0;
- operations executed more than once (a run cut short by a killed worker, run again), those the
  reconciler resent, and attempts whose result was dropped because another delivery had finished
  first;
- wallets whose holdings disagree with their last successful operation: must be 0;
- recovery: seconds from each kill to the restart of each operation it interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.common import ROOT, percentile
from harness.servers import PostgresServer, RedisServer


class Workers:
    def __init__(self, directory: Path, threads: int):
        self.directory, self.threads, self.procs, self.logs = directory, threads, [], []

    def start(self) -> subprocess.Popen:
        log = self.directory / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        proc = subprocess.Popen([str(Path(sys.executable).parent / "dramatiq"), "actors.worker", "--processes", "1",
                                 "--threads", str(self.threads)], cwd=ROOT, env=os.environ,
                                stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def children(self, proc: subprocess.Popen) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        except FileNotFoundError:
            return []

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=2000)
    parser.add_argument("--wallets", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=420.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="portfolio-sync-chaos-"))
    redis_server = RedisServer(workdir / "redis").start()
    pg = PostgresServer(workdir / "pg").init()
    os.environ.update({
        "REDIS_URL": redis_server.url, "DATABASE_URL": pg.url("chaos"), "SYNC_NAMESPACE": "chaos",
        "SIMULATED_FAILURE_RATE": "0.2", "SIMULATED_LATENCY_MS": "50", "SYNC_COOLDOWN_SECONDS": "0",
        "SYNC_RETRY_MIN_BACKOFF_MS": "500", "SYNC_RETRY_MAX_BACKOFF_MS": "5000", "CIRCUIT_RESET_S": "5",
        "REDIS_TIMEOUT_S": "3", "DB_CONNECT_TIMEOUT_S": "3", "LOG_LEVEL": "INFO",
    })
    workers = Workers(workdir, args.threads)
    try:
        run(args, redis_server, pg, workers)
    finally:
        workers.stop_all()
        redis_server.stop()
        pg.stop()
        cleanup = getattr(pg, "cleanup", None)
        if cleanup:
            cleanup()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def run(args, redis_server: RedisServer, pg: PostgresServer, workers: Workers) -> None:
    from storage import migrate

    migrate.create_database(os.environ["DATABASE_URL"], connect_timeout=5)
    migrate.apply_schema(os.environ["DATABASE_URL"], connect_timeout=5)
    import actors
    from storage.pool import get_pool

    for _ in range(args.workers):
        workers.start()
    wallets = ["0x" + f"{i:040x}" for i in range(1, args.wallets + 1)]
    accepted: set[str] = set()
    refused = Counter()
    kills: list[tuple[float, list[dict]]] = []  # (time of kill, operations it interrupted)
    restarts: list[float] = []
    stop = threading.Event()

    def in_flight_of(pid: int) -> list[dict]:
        with get_pool().connection() as conn:
            return conn.execute("SELECT id::text, attempts FROM sync_operations WHERE status = 'running' "
                                "AND worker_id LIKE %s", (f"%:{pid}",)).fetchall()

    def chaos() -> None:
        while not stop.wait(args.kill_every):
            alive = [p for p in workers.procs if p.poll() is None]
            if not alive:
                continue
            victim = random.choice(alive)
            pids = workers.children(victim)
            try:
                interrupted = [row for pid in pids for row in in_flight_of(pid)]
            except Exception:
                interrupted = []
            killed_at = time.time()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            kills.append((killed_at, interrupted))
            workers.start()

    def watch_restarts() -> None:
        # An interrupted operation has restarted once a later attempt is running or it is final.
        pending: dict[str, tuple[float, int]] = {}
        seen = 0
        while not stop.is_set() or pending:
            for killed_at, rows in kills[seen:]:
                for row in rows:
                    pending[row["id"]] = (killed_at, row["attempts"])
            seen = len(kills)
            if pending:
                try:
                    with get_pool().connection() as conn:
                        current = conn.execute(
                            "SELECT id::text, attempts, status, extract(epoch FROM started_at) AS started "
                            "FROM sync_operations WHERE id = ANY(%s::uuid[])", (list(pending),)).fetchall()
                except Exception:
                    time.sleep(0.5)
                    continue
                for row in current:
                    killed_at, attempts = pending[row["id"]]
                    if row["attempts"] > attempts or row["status"] in ("succeeded", "failed"):
                        restarts.append(float(row["started"]) - killed_at if row["attempts"] > attempts
                                        else time.time() - killed_at)
                        del pending[row["id"]]
            time.sleep(0.2)
            if stop.is_set() and time.time() > deadline:
                break

    deadline = time.time() + args.timeout
    chaos_thread = threading.Thread(target=chaos, daemon=True)
    watcher = threading.Thread(target=watch_restarts, daemon=True)
    chaos_thread.start()
    watcher.start()

    started = time.time()
    events = {"redis_restart": None, "postgres_restart": None}
    cycle = 0
    while len(accepted) < args.syncs and time.time() < deadline:
        elapsed = time.time() - started
        # Redis and PostgreSQL go down a third and two thirds of the way through the requests.
        if events["redis_restart"] is None and len(accepted) > args.syncs / 3:
            redis_server.kill()
            time.sleep(2)
            redis_server.start()
            events["redis_restart"] = round(elapsed, 1)
        if events["postgres_restart"] is None and len(accepted) > 2 * args.syncs / 3:
            pg.stop()
            time.sleep(3)
            pg.start()
            events["postgres_restart"] = round(elapsed, 1)
        batch = [{"user_id": f"chaos-{i % 50}", "wallet_address": wallets[i % len(wallets)], "chain_ids": [1, 10],
                  "force": True} for i in range(cycle, cycle + 20)]
        cycle += 20
        try:
            accepted.update(actors.request_syncs(batch))
        except actors.SyncUnavailable as exc:
            refused[str(exc).split(":")[0]] += len(batch)  # the caller is told; nothing was accepted
            time.sleep(0.5)
        time.sleep(0.2)

    # Quiescence: every accepted operation final (the chaos stops first).
    stop.set()
    chaos_thread.join(30)
    final_statuses = ("succeeded", "failed")
    while time.time() < deadline:
        try:
            with get_pool().connection() as conn:
                open_ops = conn.execute("SELECT count(*) AS n FROM sync_operations WHERE id = ANY(%s::uuid[]) "
                                        "AND status NOT IN ('succeeded', 'failed')", (list(accepted),)).fetchone()["n"]
        except Exception:
            open_ops = -1
        if open_ops == 0:
            break
        time.sleep(1)
    watcher.join(10)

    with get_pool().connection() as conn:
        rows = conn.execute("SELECT id::text, status, error_code, attempts, requeues FROM sync_operations "
                            "WHERE id = ANY(%s::uuid[])", (list(accepted),)).fetchall()
        # Each wallet's last successful operation and what its holdings add up to now.
        mismatches = conn.execute("""
            WITH last_ok AS (
                SELECT DISTINCT ON (user_id, wallet_address) user_id, wallet_address, holdings_count, total_value_usd
                FROM sync_operations WHERE status = 'succeeded'
                ORDER BY user_id, wallet_address, finished_at DESC
            ), now_held AS (
                SELECT user_id, wallet_address, count(*) AS n, coalesce(sum(value_usd), 0) AS total
                FROM holdings GROUP BY user_id, wallet_address
            )
            SELECT count(*) AS n FROM last_ok l LEFT JOIN now_held h USING (user_id, wallet_address)
            WHERE coalesce(h.n, 0) <> l.holdings_count OR coalesce(h.total, 0) <> l.total_value_usd""").fetchone()["n"]
        wallets_checked = conn.execute("SELECT count(DISTINCT (user_id, wallet_address)) AS n FROM sync_operations "
                                       "WHERE status = 'succeeded'").fetchone()["n"]
        stuck = conn.execute("SELECT status, attempts, requeues, error_code, count(*) AS n FROM sync_operations "
                             "WHERE id = ANY(%s::uuid[]) AND status NOT IN ('succeeded', 'failed') "
                             "GROUP BY 1, 2, 3, 4", (list(accepted),)).fetchall()
    dropped = sum(log.read_text(errors="replace").count("was finished by another delivery") for log in workers.logs)
    statuses = Counter(r["status"] for r in rows)
    result = {
        "requests_accepted": len(accepted),
        "rows_found": len(rows),
        "final_status": dict(Counter(f"{r['status']}" + (f" ({r['error_code']})" if r["error_code"] else "")
                                     for r in rows if r["status"] in final_statuses)),
        "operations_lost": len(accepted) - sum(statuses[s] for s in final_statuses),
        "not_final_at_the_end": [dict(r) for r in stuck],
        # An operation whose run a kill cut short ran (part of) its attempt again.
        "operations_executed_more_than_once": len(restarts),
        "resent_by_the_reconciler": sum(1 for r in rows if r["requeues"]),
        "attempt_results_dropped_as_duplicates": dropped,
        "wallets_checked": wallets_checked,
        "wallets_with_holdings_disagreeing": mismatches,
        "worker_kills": len(kills),
        "interrupted_operations": sum(len(k[1]) for k in kills),
        "restart_after_kill_s_p50": percentile(restarts, 0.5),
        "restart_after_kill_s_p95": percentile(restarts, 0.95),
        "restart_after_kill_s_max": max(restarts) if restarts else None,
        "refused_while_a_server_was_down": dict(refused),
        "redis_killed_and_restarted_at_s": events["redis_restart"],
        "postgres_restarted_at_s": events["postgres_restart"],
        "wall_time_s": round(time.time() - started, 1),
        "simulated_failure_rate": 0.2,
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result, default=str))
    if result["operations_lost"] or mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
