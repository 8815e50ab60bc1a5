"""What one sync costs, measured through the real worker, and the rollups' cost as an A/B.

    .venv/bin/python -m bench.capacity_measure [--syncs 1000] [--rounds 3] [--processes 1] [--threads 8]
                                               [--out bench/results/capacity.json]

Runs in a throwaway database and a private ``redis-server`` (so Redis's command and byte counters are
this run's alone).  Per sync it measures: Redis commands (by command) and bytes in and out; PostgreSQL
transactions, rows written (by table) and WAL bytes (``pg_walinspect``: records of this database only,
and the server-wide LSN delta beside it, which other databases of the server add to); CPU seconds of
the worker processes, of redis-server and of this database's PostgreSQL backends.  Then, after a
warm-up round, rounds of ``--syncs`` syncs run with the rollup trigger enabled (A) and disabled (B) in
one running worker, in the order ABBA ABBA ... (balanced for an even ``--rounds``), and each round's
throughput is printed.  Every sync's user owns :data:`WALLETS_PER_USER` wallets.  The costs are written
as JSON for ``bench/capacity.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis

from bench import sandbox
from bench.common import wallets

ROOT = Path(__file__).resolve().parent.parent
FINAL = "('succeeded', 'partial', 'failed')"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cpu:
    """CPU seconds of a changing set of processes, each counted from when it was first seen."""

    def __init__(self):
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def sample(self, pids) -> None:
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            self.first.setdefault(pid, t.user + t.system)
            self.last[pid] = t.user + t.system

    def seconds(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last)


def tree(pid: int) -> list[int]:
    try:
        parent = psutil.Process(pid)
        return [pid] + [c.pid for c in parent.children(recursive=True)]
    except psutil.Error:
        return []


def redis_counters(client: redis.Redis) -> dict:
    stats = client.info("stats")
    commands = {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}
    return {"in": stats["total_net_input_bytes"], "out": stats["total_net_output_bytes"], "commands": commands}


def pg_counters(conn) -> dict:
    db = conn.execute("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database"
                      " WHERE datname = current_database()").fetchone()
    tables = {r[0]: tuple(int(x or 0) for x in r[1:]) for r in conn.execute(
        "SELECT coalesce(i.inhparent::regclass::text, s.relname), sum(n_tup_ins), sum(n_tup_upd), sum(n_tup_del)"
        " FROM pg_stat_user_tables AS s LEFT JOIN pg_inherits AS i ON i.inhrelid = s.relid GROUP BY 1").fetchall()}
    return {"xact": db[0], "ins": db[1], "upd": db[2], "del": db[3], "tables": tables,
            "lsn": conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]}


def wait_final(conn, total: int, cpu: Cpu, pids, deadline_s: float = 900) -> None:
    """Wait until ``total`` operations are final, sampling the CPU of the processes ``pids()`` names."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        cpu.sample(pids())
        if conn.execute(f"SELECT count(*) FROM sync_operations WHERE status IN {FINAL}").fetchone()[0] >= total:
            return
        time.sleep(0.2)
    raise TimeoutError("the syncs did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds of each kind")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--chains", default="1,10")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "capacity.json"))
    args = parser.parse_args()
    chains = [int(c) for c in args.chains.split(",")]

    port = free_port()
    redis_server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    time.sleep(0.5)
    try:
        with sandbox.enter(SIMULATED_LATENCY_MS=str(args.latency_ms), SIMULATED_FAILURE_RATE="0",
                           LOG_LEVEL="WARNING", SYNC_COOLDOWN_SECONDS="0"):
            result = measure(args, chains, redis_server.pid)
    finally:
        redis_server.send_signal(signal.SIGTERM)
        redis_server.wait(30)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def measure(args, chains: list[int], redis_pid: int) -> dict:
    import psycopg

    import actors

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    dboid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "dramatiq"), "actors.worker", "--processes", str(args.processes),
         "--threads", str(args.threads)], cwd=ROOT, env=os.environ,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    offset, total = 0, 0
    try:
        # Warm up: the worker's imports, pools and first partitions are no sync's cost.
        actors.request_syncs([{"user_id": "warm", "wallet_address": w, "chain_ids": chains}
                              for w in wallets(50, 10**9)])
        total += 50
        wait_final(conn, total, Cpu(), lambda: tree(worker.pid))

        worker_cpu, redis_cpu, pg_cpu = Cpu(), Cpu(), Cpu()
        backends = lambda: [r[0] for r in conn.execute(  # noqa: E731
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        worker_cpu.sample(tree(worker.pid)), redis_cpu.sample([redis_pid]), pg_cpu.sample(backends())
        r0, p0 = redis_counters(client), pg_counters(conn)
        started = time.perf_counter()
        batch = wallets(args.syncs, offset)
        offset += args.syncs
        for i in range(0, len(batch), 500):
            actors.request_syncs(requests(batch[i:i + 500], offset - args.syncs + i, chains))
        total += args.syncs
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            worker_cpu.sample(tree(worker.pid)), redis_cpu.sample([redis_pid]), pg_cpu.sample(backends())
            done = conn.execute(f"SELECT count(*) FROM sync_operations WHERE status IN {FINAL}").fetchone()[0]
            if done >= total:
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        worker_cpu.sample(tree(worker.pid)), redis_cpu.sample([redis_pid]), pg_cpu.sample(backends())
        r1, p1 = redis_counters(client), pg_counters(conn)
        wal_db = conn.execute(
            "SELECT coalesce(sum(record_length + fpi_length), 0) FROM pg_get_wal_records_info(%s, %s)"
            " WHERE block_ref LIKE %s", (p0["lsn"], p1["lsn"], f"%/{dboid}/%")).fetchone()[0]
        wal_server = conn.execute("SELECT %s::pg_lsn - %s::pg_lsn", (p1["lsn"], p0["lsn"])).fetchone()[0]
        n = args.syncs
        commands = {k: (v - r0["commands"].get(k, 0)) / n for k, v in r1["commands"].items()
                    if v - r0["commands"].get(k, 0) > 0}
        costs = {
            "syncs": n, "chains_per_sync": len(chains), "seconds": round(seconds, 2),
            "redis_commands_per_sync": round(sum(commands.values()), 2),
            "redis_commands_by_name_per_sync": {k: round(v, 2) for k, v in sorted(commands.items(), key=lambda kv: -kv[1])},
            "redis_bytes_in_per_sync": round((r1["in"] - r0["in"]) / n),
            "redis_bytes_out_per_sync": round((r1["out"] - r0["out"]) / n),
            "pg_transactions_per_sync": round((p1["xact"] - p0["xact"]) / n, 2),
            "pg_rows_written_per_sync": round(((p1["ins"] - p0["ins"]) + (p1["upd"] - p0["upd"])
                                               + (p1["del"] - p0["del"])) / n, 2),
            "pg_rows_by_table_per_sync": {t: [round((a - b) / n, 2) for a, b in zip(v, p0["tables"].get(t, (0, 0, 0)))]
                                          for t, v in p1["tables"].items()},
            "pg_wal_bytes_per_sync": round(float(wal_db) / n),
            "pg_wal_bytes_server_wide_per_sync": round(float(wal_server) / n),
            "cpu_s_per_sync": {"worker": worker_cpu.seconds() / n, "redis": redis_cpu.seconds() / n,
                               "postgres": pg_cpu.seconds() / n},
            "worker": f"{args.processes} processes x {args.threads} threads",
            "provider_latency_ms": args.latency_ms,
            "load_average": os.getloadavg(),
        }
        costs["ab_rollups"] = ab_rounds(args, chains, conn, offset, total,
                                        lambda: (tree(worker.pid), [redis_pid], backends()))
        return costs
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        conn.close()


#: Wallets a user holds in these runs.  Users own a few wallets each (the seeded dashboard data: 100,000
#: users, ~3 wallets), and the per-user rollups keep a row per user: a user of 500 wallets (these runs'
#: earlier shape) had every finishing batch of the run wait on the same few rows.
WALLETS_PER_USER = 3


def requests(batch: list[str], first: int, chains: list[int]) -> list[dict]:
    """Sync requests for ``batch``, whose first wallet is the ``first``-th of the run, by user."""
    return [{"user_id": f"user-{(first + n) // WALLETS_PER_USER}", "wallet_address": w, "chain_ids": chains}
            for n, w in enumerate(batch)]


def ab_rounds(args, chains, conn, offset: int, total: int, pids) -> dict:
    """Rounds of rollups on (A) and off (B), in one worker, after one warm-up round that is not counted and
    in the order ABBA ABBA ..., so neither side is always the first of its pair: syncs per second of each,
    and CPU per sync of the worker, Redis and this database's PostgreSQL backends.  On a shared machine the
    CPU figure is the steadier one: other processes slow a round down, but do not add to its CPU."""
    import actors

    rates: dict[str, list[float]] = {"with_rollups": [], "without_rollups": [], "warm_up": []}
    cpu_ms: dict[str, list[float]] = {"with_rollups": [], "without_rollups": [], "warm_up": []}
    order = ["with_rollups", "without_rollups", "without_rollups", "with_rollups"]
    for round_number, kind in enumerate(["warm_up"] + [order[n % 4] for n in range(2 * args.rounds)]):
        conn.execute("ALTER TABLE sync_operations " + ("DISABLE" if kind == "without_rollups" else "ENABLE")
                     + " TRIGGER sync_operations_rollup")
        batch = wallets(args.syncs, offset)
        offset += args.syncs
        cpu = Cpu()
        cpu.sample([pid for group in pids() for pid in group])
        first = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        for i in range(0, len(batch), 500):
            actors.request_syncs(requests(batch[i:i + 500], offset - args.syncs + i, chains))
        total += args.syncs
        wait_final(conn, total, cpu, lambda: [pid for group in pids() for pid in group])
        seconds = conn.execute("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM sync_operations"
                               " WHERE enqueued_at >= %s", (first,)).fetchone()[0]
        rates[kind].append(round(args.syncs / float(seconds), 1))
        cpu_ms[kind].append(round(cpu.seconds() * 1000 / args.syncs, 3))
        print(f"round {round_number}: {kind}: {rates[kind][-1]} syncs/s, {cpu_ms[kind][-1]} ms CPU a sync"
              f" (load {os.getloadavg()[0]:.1f})", flush=True)
    conn.execute("ALTER TABLE sync_operations ENABLE TRIGGER sync_operations_rollup")

    median = statistics.median
    a, b = median(rates["with_rollups"]), median(rates["without_rollups"])
    ca, cb = median(cpu_ms["with_rollups"]), median(cpu_ms["without_rollups"])
    return {**rates, "median_with": a, "median_without": b, "with_over_without": round(a / b, 3),
            "cpu_ms_per_sync": cpu_ms, "cpu_median_with": ca, "cpu_median_without": cb,
            "cpu_with_over_without": round(ca / cb, 3)}


if __name__ == "__main__":
    main()
