"""Batch enqueue alone: this tree against another commit's, interleaved with BullMQ's ``addBulk``.

    .venv/bin/python -m bench.enqueue_ab --before COMMIT [--rounds 3] [--n 3000] [--batch 500] [--repeat 5]

``bench.run_all``'s enqueue figure is one pass of ``request_syncs`` per round (3,000 requests, about
half a second) after 3,000 ``request_sync`` calls: on the shared machine one figure swings twofold
from round to round.  Here each round runs, in turn, this tree, ``COMMIT``'s tree (built as
``run_all --before`` builds it: its product, this tree's ``bench/``) and BullMQ (``--repeat`` runs of
``bench/node/bullmq_bench.mjs``); each project process measures ``--repeat`` passes of ``--n``
requests in batches of ``--batch`` after a warm-up.  A round's figure per system is the median of its
passes; printed per round, then the medians over the rounds and the ratios of each round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

from bench.run_all import NODE_DIR, PY, ROOT, before_tree, ensure_node, run_json


def measure(args) -> None:
    """One project process: ``args.repeat`` passes of ``args.n`` requests (the tree on ``sys.path``)."""
    from bench import sandbox
    from bench.common import emit, wallets

    with sandbox.enter(LOG_LEVEL="WARNING"):
        import actors.worker

        for w in wallets(20, 80_000_000):  # warm-up: scripts loaded, pools open
            actors.request_sync("bench-warmup", w, [1])
        rates = []
        for k in range(args.repeat):
            addresses = wallets(args.n, 10_000_000 + k * 1_000_000)
            started = time.perf_counter()
            for i in range(0, args.n, args.batch):
                actors.request_syncs([{"user_id": "bench-batch", "wallet_address": w, "chain_ids": [1]}
                                      for w in addresses[i:i + args.batch]])
            rates.append(args.n / (time.perf_counter() - started))
        actors.worker.broker.flush_all()
    emit({"system": "project", "mode": "enqueue_batches", "request_syncs_per_s": statistics.median(rates),
          "passes": rates, "jobs": args.n, "batch": args.batch})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=False, metavar="COMMIT")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        return measure(args)
    if not args.before:
        parser.error("--before COMMIT is required")
    node = ensure_node()
    trees = {"project": ROOT, "before": before_tree(args.before)}
    inner = ["-m", "bench.enqueue_ab", "--measure", "--n", str(args.n), "--batch", str(args.batch),
             "--repeat", str(args.repeat)]
    figures: dict[str, list[float]] = {"project": [], "before": [], "bullmq": []}
    for round_no in range(args.rounds):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        for name, tree in trees.items():
            result = run_json([PY, *inner], cwd=tree)
            figures[name].append(result.get("request_syncs_per_s") or float("nan"))
        if node:
            bulk = [run_json([node, "bullmq_bench.mjs", "enqueue", "--n", str(args.n), "--batch", str(args.batch),
                              "--redis", os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
                              "--prefix", f"bench-bullmq-{uuid.uuid4().hex[:10]}"], cwd=NODE_DIR).get("add_bulk_per_s")
                    for _ in range(args.repeat)]
            figures["bullmq"].append(statistics.median(b for b in bulk if b is not None))
        print(f"round {round_no + 1} (load {load}): " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in figures.items() if v),
              flush=True)
    medians = {k: statistics.median(v) for k, v in figures.items() if v}
    print("medians: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in medians.items()))
    print("now ÷ before per round: " + ", ".join(f"{a / b:.2f}x" for a, b in zip(figures["project"], figures["before"])))
    if figures["bullmq"]:
        print("now ÷ BullMQ addBulk per round: "
              + ", ".join(f"{a / b:.2f}x" for a, b in zip(figures["project"], figures["bullmq"])))
    print(json.dumps({"before": args.before, "figures": figures, "medians": medians,
                      "load_average_end": os.getloadavg()}))


if __name__ == "__main__":
    sys.exit(main())
