"""Syncs per second with the simulated provider, through the real ``dramatiq`` worker.

    .venv/bin/python -m bench.sync_throughput [--syncs 2000] [--processes 2] [--threads 8]
                                              [--latency-ms 100] [--chains 1,10]

Runs in a throwaway database and Redis namespace.  Prints:

- enqueue rate of ``request_sync`` one at a time and of ``request_syncs`` in
  batches of 500 (validation, dedup, cooldown and the audit row included);
- sync throughput: operations finished per second between the first start
  and the last finish (from the audit trail), next to the ideal for this
  worker (in-flight syncs / provider latency: each sync reads its chains
  concurrently, so one sync takes about one latency).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import sandbox
from bench.common import wallets

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--chains", default="1,10")
    args = parser.parse_args()
    chains = [int(c) for c in args.chains.split(",")]

    with sandbox.enter(SIMULATED_LATENCY_MS=str(args.latency_ms), SIMULATED_FAILURE_RATE="0", LOG_LEVEL="WARNING"):
        import actors

        # Enqueue rates, measured before any worker runs so nothing competes for the CPU.
        single = wallets(500, 10_000_000)
        started = time.perf_counter()
        for w in single:
            actors.request_sync("bench-single", w, chains)
        one_by_one = len(single) / (time.perf_counter() - started)

        batch = wallets(args.syncs, 0)
        started = time.perf_counter()
        for i in range(0, len(batch), 500):
            actors.request_syncs([{"user_id": "bench", "wallet_address": w, "chain_ids": chains}
                                  for w in batch[i:i + 500]])
        batched = len(batch) / (time.perf_counter() - started)

        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "dramatiq"), "actors.worker", "--processes", str(args.processes),
             "--threads", str(args.threads)], cwd=ROOT, env=os.environ,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            from storage.pool import get_pool

            total = len(batch) + len(single)
            deadline = time.monotonic() + 600
            with get_pool().connection() as conn:
                while time.monotonic() < deadline:
                    done = conn.execute("SELECT count(*) AS n FROM sync_operations "
                                        "WHERE status IN ('succeeded', 'failed')").fetchone()["n"]
                    if done >= total:
                        break
                    time.sleep(0.5)
                stats = conn.execute("""
                    SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                           count(*) FILTER (WHERE status = 'failed') AS failed,
                           extract(epoch FROM max(finished_at) - min(started_at)) AS seconds,
                           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms,
                           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms
                    FROM sync_operations""").fetchone()
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)

    in_flight = args.processes * args.threads
    throughput = (stats["succeeded"] + stats["failed"]) / float(stats["seconds"])
    ideal = in_flight / (args.latency_ms / 1000)
    result = {
        "syncs": total, "succeeded": stats["succeeded"], "failed": stats["failed"],
        "chains_per_sync": len(chains), "provider_latency_ms": args.latency_ms,
        "worker": f"{args.processes} processes x {args.threads} threads",
        "enqueue_one_by_one_per_s": round(one_by_one), "enqueue_batch_per_s": round(batched),
        "syncs_per_s": round(throughput, 1), "ideal_syncs_per_s": round(ideal, 1),
        "fraction_of_ideal": round(throughput / ideal, 3),
        "sync_duration_p50_ms": stats["p50_ms"], "sync_duration_p95_ms": stats["p95_ms"],
        "cpus": os.cpu_count(),
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
