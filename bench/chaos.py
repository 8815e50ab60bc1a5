"""Chaos run: thousands of syncs while workers are SIGKILLed, Redis and PostgreSQL restarted.

    .venv/bin/python -m bench.chaos [--syncs 2000] [--wallets 1000] [--workers 3] [--kill-every 5]
    .venv/bin/python -m bench.chaos --combined [--syncs 400]

``--combined`` runs issue 14's combined-fault sequence instead (:func:`run_combined`): two
Procfile-style workers, 300 ms provider latency, 20% transient failures; then within ~15 s a kill -9
of one worker's process group, SIGTERM to the other's, corrupt messages in every queue, a Redis
restart (AOF) and a PostgreSQL restart.  It prints operations accepted / lost / inconsistent /
executed more than once, the recovery after the kill (p50/p95 of the seconds from the kill to the end
of each operation that was running at it) and the success rate.

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
import shutil
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
    def __init__(self, directory: Path, threads: int, processes: int = 1, extra_args: tuple[str, ...] = ()):
        self.directory, self.threads, self.procs, self.logs = directory, threads, [], []
        self.processes, self.extra_args = processes, extra_args

    def start(self) -> subprocess.Popen:
        log = self.directory / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        proc = subprocess.Popen([str(Path(sys.executable).parent / "dramatiq"), "actors.worker", "--processes",
                                 str(self.processes), "--threads", str(self.threads), *self.extra_args],
                                cwd=ROOT, env=os.environ,
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


#: Wallets whose holdings disagree with their last successful operation (its count and total).
INCONSISTENT_WALLETS = """
    WITH last_ok AS (
        SELECT DISTINCT ON (user_id, wallet_address) user_id, wallet_address, holdings_count, total_value_usd
        FROM sync_operations WHERE status = 'succeeded'
        ORDER BY user_id, wallet_address, finished_at DESC
    ), now_held AS (
        SELECT user_id, wallet_address, count(*) AS n, coalesce(sum(value_usd), 0) AS total
        FROM holdings GROUP BY user_id, wallet_address
    )
    SELECT count(*) AS n FROM last_ok l LEFT JOIN now_held h USING (user_id, wallet_address)
    WHERE coalesce(h.n, 0) <> l.holdings_count OR coalesce(h.total, 0) <> l.total_value_usd"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=2000)
    parser.add_argument("--wallets", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=420.0)
    parser.add_argument("--combined", action="store_true", help="issue 14's combined-fault sequence")
    parser.add_argument("--keep-logs", type=Path, help="with --combined: copy the workers' logs there")
    args = parser.parse_args()
    if args.combined:
        result = combined(syncs=args.syncs if args.syncs != 2000 else 400, timeout=args.timeout,
                          keep_logs=args.keep_logs)
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
        print(json.dumps(result, default=str))
        sys.exit(1 if result["operations_lost"] or result["operations_inconsistent"] else 0)

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
        _stop(workers, redis_server, pg)
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
        mismatches = conn.execute(INCONSISTENT_WALLETS).fetchone()["n"]
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


#: The environment of the combined run: the project's defaults, but for the provider's behaviour.
COMBINED_ENV = {"SIMULATED_FAILURE_RATE": "0.2", "SIMULATED_LATENCY_MS": "300", "SYNC_COOLDOWN_SECONDS": "0",
                "SYNC_READ_SHARE_WINDOW_MS": "5000", "LOG_LEVEL": "INFO"}


def combined(*, syncs: int = 400, timeout: float = 300.0, threads: int = 8, processes: int = 2,
             keep_logs: Path | None = None) -> dict:
    """Run the combined-fault sequence on servers of its own and return what it measured (the workers'
    logs copied to ``keep_logs`` if given)."""
    workdir = Path(tempfile.mkdtemp(prefix="portfolio-sync-combined-"))
    redis_server = RedisServer(workdir / "redis").start()
    pg = PostgresServer(workdir / "pg").init()
    saved = dict(os.environ)
    os.environ.update({"REDIS_URL": redis_server.url, "DATABASE_URL": pg.url("combined"),
                       "SYNC_NAMESPACE": "combined", **COMBINED_ENV})
    workers = Workers(workdir, threads, processes, ("--worker-shutdown-timeout", "25000"))
    try:
        return run_combined(syncs, timeout, redis_server, pg, workers)
    finally:
        _stop(workers, redis_server, pg)
        os.environ.clear()
        os.environ.update(saved)
        if keep_logs:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in workers.logs:
                shutil.copy(log, keep_logs / log.name)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def _stop(workers: Workers, redis_server: RedisServer, pg: PostgresServer) -> None:
    """Stop a run's workers, then its Redis and PostgreSQL (and remove the cluster, where it has to)."""
    workers.stop_all()
    redis_server.stop()
    pg.stop()
    cleanup = getattr(pg, "cleanup", None)
    if cleanup:
        cleanup()


def _query(sql: str, params=()) -> list[dict]:
    """``sql``'s rows, asked again for up to 30 s while PostgreSQL restarts (the pool's connections go stale)."""
    import psycopg

    from storage.pool import get_pool

    end = time.monotonic() + 30
    while True:
        try:
            with get_pool().connection() as conn:
                return conn.execute(sql, params).fetchall()
        except psycopg.Error:
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def run_combined(syncs: int, timeout: float, redis_server, pg, workers: Workers) -> dict:
    from storage import migrate

    migrate.create_database(os.environ["DATABASE_URL"], connect_timeout=5)
    migrate.apply_schema(os.environ["DATABASE_URL"], connect_timeout=5)
    import actors
    from actors.constants import PERIODIC_QUEUE, QUEUES

    first, second = workers.start(), workers.start()
    _wait_ready(workers, 2 * workers.processes)
    accepted: list[str] = []
    wallets = ["0x" + f"{i:040x}" for i in range(1, syncs + 1)]
    for start in range(0, syncs, 50):
        batch = [{"user_id": f"combined-{i % 40}", "wallet_address": wallets[i], "chain_ids": [1, 10],
                  "force": True} for i in range(start, min(syncs, start + 50))]
        accepted += actors.request_syncs(batch)
    # Kill the first worker while it runs syncs: a second in (the workers under way), at the first look that
    # finds it running some.  A fixed wait would find nothing running on a fast, idle machine.
    time.sleep(1)
    pids = [str(p) for p in workers.children(first)]
    looking_until = time.monotonic() + 10
    while True:
        running = _query("SELECT id::text FROM sync_operations WHERE status = 'running' AND "
                         "split_part(worker_id, ':', 2) = ANY(%s)", (pids,))
        if running or time.monotonic() > looking_until:
            break
        time.sleep(0.05)
    at_kill = [r["id"] for r in running]
    killed_at = _query("SELECT now() AS t")[0]["t"]  # PostgreSQL's clock, as finished_at
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    workers.start()  # the platform restarts the dyno
    time.sleep(1)
    os.killpg(second.pid, signal.SIGTERM)
    # Corrupt messages in every queue: an id whose body is not a message, and one with no body at all.
    import redis

    client = redis.Redis.from_url(redis_server.url)
    for queue in [q for q, _ in QUEUES.values()] + [PERIODIC_QUEUE]:
        client.hset(f"combined:{queue}.msgs", "corrupt-1", b"\xff\x00not json")
        client.rpush(f"combined:{queue}", "corrupt-1", "corrupt-missing")
    time.sleep(2)
    redis_server.kill()
    time.sleep(1)
    redis_server.start()
    second.wait(40)
    workers.start()
    time.sleep(3)
    pg.stop()
    time.sleep(2)
    pg.start()
    faults_over_s = (_query("SELECT now() AS t")[0]["t"] - killed_at).total_seconds()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            open_ops = _query("SELECT count(*) AS n FROM sync_operations WHERE id = ANY(%s::uuid[]) AND status NOT IN "
                              "('succeeded', 'partial', 'failed')", (accepted,))[0]["n"]
        except Exception:
            open_ops = -1
        if open_ops == 0:
            break
        time.sleep(0.5)
    rows = _query("SELECT id::text, status, error_code, attempts, requeues, finished_at FROM sync_operations "
                  "WHERE id = ANY(%s::uuid[])", (accepted,))
    inconsistent = _query(INCONSISTENT_WALLETS)[0]["n"]
    by_id = {r["id"]: r for r in rows}
    final = [r for r in rows if r["status"] in ("succeeded", "partial", "failed")]
    recovery = [(by_id[op]["finished_at"] - killed_at).total_seconds() for op in at_kill
                if by_id[op]["finished_at"] is not None]
    logs = "".join(log.read_text(errors="replace") for log in workers.logs)
    return {
        "operations_accepted": len(accepted),
        "operations_lost": len(accepted) - len(final),
        "operations_inconsistent": inconsistent,
        # Run (in part) by more than one delivery: interrupted by a fault and run again, or resent.
        "operations_executed_more_than_once": sum(1 for r in rows if r["requeues"] or r["id"] in at_kill),
        "final_status": dict(Counter(r["status"] + (f" ({r['error_code']})" if r["error_code"] else "")
                                     for r in final)),
        "success_rate": round(sum(1 for r in final if r["status"] == "succeeded") / max(1, len(accepted)), 4),
        "running_at_the_kill": len(at_kill),
        "recovery_after_kill_s_p50": percentile(recovery, 0.5),
        "recovery_after_kill_s_p95": percentile(recovery, 0.95),
        "recovery_after_kill_s_max": max(recovery) if recovery else None,
        "faults_over_after_s": round(faults_over_s, 1),
        "at_kill_detail": sorted((round((by_id[op]["finished_at"] - killed_at).total_seconds(), 1), by_id[op]["attempts"],
                                  by_id[op]["requeues"], by_id[op]["status"], by_id[op]["error_code"], op)
                                 for op in at_kill if by_id[op]["finished_at"] is not None),
        "quarantined_lines": logs.count("uarantin"),
        "circuit_open_results": sum(1 for r in rows if r["error_code"] == "circuit_open"),
    }


def _wait_ready(workers: Workers, count: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = "".join(log.read_text(errors="replace") for log in workers.logs)
        if text.count("Worker process is ready for action") >= count:
            return
        time.sleep(0.2)
    raise RuntimeError("the workers did not start")


if __name__ == "__main__":
    main()
