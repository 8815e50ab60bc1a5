"""Where a batch enqueue's wall time goes, step by step: microseconds per request.

    .venv/bin/python -m bench.enqueue_steps [--n 500] [--passes 14]

``request_syncs`` of ``--n`` new wallets per pass (a throwaway database and namespace, ``bench.sandbox``),
its steps timed by wrapping them in this process only: the admission (``intake._admit``, one Redis round
trip), the audit rows' ``INSERT`` with the messages encoded meanwhile (``operations.insert_operations``),
the messages' send (``SyncBroker.send_encoded``), and the rest (validation, ids, bookkeeping) as the
difference.  Prints the median over the passes after the first two, per request.  (A batch smaller than
``intake._OVERLAP_MIN`` encodes its messages before the ``INSERT``: counted in the rest.  "send" includes
the worker's enqueue middleware, as this process imports the worker's broker.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable


def _timed(name: str, func: Callable, spent: dict[str, float]) -> Callable:
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started
    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="requests per batch")
    parser.add_argument("--passes", type=int, default=14)
    args = parser.parse_args(argv)
    if args.n < 1 or args.passes < 3:
        parser.error("--n must be at least 1 and --passes at least 3")

    from bench import sandbox
    from bench.common import wallets

    with sandbox.enter(LOG_LEVEL="WARNING"):
        import actors
        import actors.worker
        from actors.services import intake
        from storage import operations

        for w in wallets(20, 80_000_000):  # warm-up: scripts loaded, pools open
            actors.request_sync("bench-warmup", w, [1])
        spent: dict[str, float] = {}
        steps = {"admission": (intake, "_admit"), "insert (encoding meanwhile)": (operations, "insert_operations"),
                 "send": (actors.worker.broker, "send_encoded")}
        for name, (owner, attribute) in steps.items():
            setattr(owner, attribute, _timed(name, getattr(owner, attribute), spent))
        per_pass: dict[str, list[float]] = {name: [] for name in [*steps, "the rest", "request_syncs"]}
        for k in range(args.passes):
            spent.update(dict.fromkeys(steps, 0.0))
            requests = [{"user_id": "bench", "wallet_address": w, "chain_ids": [1]}
                        for w in wallets(args.n, 10_000_000 + k * args.n)]
            started = time.perf_counter()
            actors.request_syncs(requests)
            total = time.perf_counter() - started
            for name in steps:
                per_pass[name].append(spent[name])
            per_pass["the rest"].append(total - sum(spent.values()))
            per_pass["request_syncs"].append(total)
    print(f"request_syncs of {args.n} new wallets, median of passes 3-{args.passes}, µs per request:")
    for name, values in per_pass.items():
        print(f"  {name:28} {statistics.median(values[2:]) * 1e6 / args.n:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
