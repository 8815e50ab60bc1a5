"""Where the time goes on the project's hot paths (pyinstrument in the producer, py-spy on the worker).

    .venv/bin/python -m bench.profile_hotpaths producer [--n 1000] [--batch 500]
    .venv/bin/python -m bench.profile_hotpaths worker   [--n 6000] [--gil] [--worker-module actors] [--env K=V]
                                                        [--realistic [--resync]] [--only-thread '']

``--realistic`` profiles bench.project's realistic sync (the default chains and token lists) instead of
the no-op one; with ``--resync`` each wallet is synced once unprofiled, then again while profiled (the
steady state: the stored snapshot unchanged).  A sync's chain reads run on the ``chain`` threads, not
under ``process_message``: pass ``--only-thread ''`` to count every thread.

Needs the ``bench`` extra (``.venv/bin/pip install -e '.[bench]'``: pyinstrument, py-spy; py-spy attaches
with ptrace, so run it as root or with CAP_SYS_PTRACE).  Reports go to ``bench/results/profile-*``;
a summary by function (self and inclusive share of the samples) is printed.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path

from bench import sandbox
from bench.common import BIN, Worker, wallets
from bench.project import DEFAULTS

RESULTS = Path(__file__).resolve().parent / "results"


def producer(args) -> None:
    from pyinstrument import Profiler

    with sandbox.enter(LOG_LEVEL="WARNING", SIMULATED_LATENCY_MS="0", SIMULATED_TOKENS_PER_CHAIN="1"):
        import actors.worker

        for w in wallets(20, 80_000_000):
            actors.request_sync("bench-warmup", w, [1])
        for label, run in (
            ("request_sync", lambda: [actors.request_sync("bench-one", w, [1]) for w in wallets(args.n, 0)]),
            ("request_syncs", lambda: [actors.request_syncs([{"user_id": "bench-batch", "wallet_address": w,
                                                               "chain_ids": [1]} for w in chunk])
                                       for chunk in _chunks(wallets(args.n * 4, 10_000_000), args.batch)]),
        ):
            profiler = Profiler(interval=0.0005)
            started = time.perf_counter()
            profiler.start()
            run()
            profiler.stop()
            elapsed = time.perf_counter() - started
            count = args.n if label == "request_sync" else args.n * 4
            out = RESULTS / f"profile-{label}.txt"
            out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
            print(f"== {label}: {count} in {elapsed:.2f} s ({count / elapsed:,.0f}/s, profiled), report {out}")
            print(profiler.output_text(unicode=False, color=False, show_all=False)[:6000])
        actors.worker.broker.flush_all()


def _chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def worker(args) -> None:
    _latency, chain_list, tokens = DEFAULTS["realistic"] if args.realistic else (0, "1", 1)
    chains = [int(c) for c in chain_list.split(",")]
    env = {"LOG_LEVEL": "WARNING", "SIMULATED_LATENCY_MS": str(args.latency_ms), "SIMULATED_TOKENS_PER_CHAIN": str(tokens),
           "SIMULATED_FAILURE_RATE": "0", **({"SYNC_COOLDOWN_SECONDS": "0"} if args.resync else {})}
    with sandbox.enter(**env):
        import actors
        from bench.project import _submit_batches, _wait_final, _warm_up

        worker_env = dict(item.split("=", 1) for item in args.env)
        with Worker(args.worker_module, processes=args.processes, threads=args.threads, env=worker_env) as w:
            _warm_up(actors, w, chains)
            if args.resync:  # the same user's wallets first: the profiled pass re-syncs their snapshots
                first = _submit_batches(actors, "bench", wallets(args.n, 0), chains, 1000)
                _wait_final(args.n, 600, interval=0.2, ids=first)
            ids = _submit_batches(actors, "bench", wallets(args.n, 0), chains, 1000)
            raw = RESULTS / f"profile-worker{'-gil' if args.gil else ''}{'-idle' if args.idle else ''}.txt"
            spy = subprocess.Popen([str(BIN / "py-spy"), "record", "--pid", str(w.proc.pid), "--subprocesses",
                                    "--rate", "250", "--format", "raw", "-o", str(raw), "--duration",
                                    str(args.duration), "--nonblocking", *(["--gil"] if args.gil else []),
                                    *(["--idle"] if args.idle else [])],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started = time.monotonic()
            done = _wait_final(args.n, 600, interval=0.2, ids=ids)
            elapsed = time.monotonic() - started
            spy.wait(args.duration + 30)
        print(f"== worker: {done} syncs in {elapsed:.1f} s ({done / elapsed:,.0f}/s while profiled); stacks in {raw}")
        summarize(raw, args.top, args.only_thread)


def summarize(raw: Path, top: int, only: str | None = None) -> None:
    """Self and inclusive shares by function, from py-spy's collapsed stacks; worker threads only."""
    self_t: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        if only and not any(f.split(" (")[0].endswith(only) for f in frames):
            continue
        total += n
        names = [_short(f) for f in frames]
        self_t[names[-1]] += n
        for name in set(names):
            incl[name] += n
    print(f"{total} samples")
    print("-- self --")
    for name, n in self_t.most_common(top):
        print(f"{100 * n / total:5.1f}%  {name}")
    print("-- inclusive --")
    for name, n in incl.most_common(top * 2):
        print(f"{100 * n / total:5.1f}%  {name}")


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if "site-packages" in path or "python3" in path else "/".join(parts[-2:])
    return f"{name} ({short})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["producer", "worker", "summarize"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (CPU view)")
    parser.add_argument("--idle", action="store_true", help="include waiting threads (wall-clock view)")
    parser.add_argument("--only-thread", default="process_message",
                        help="summarize only stacks through this function (default: the worker threads' job)")
    parser.add_argument("--worker-module", default="actors.worker")
    parser.add_argument("--realistic", action="store_true", help="the default chains and token lists")
    parser.add_argument("--resync", action="store_true", help="profile the second sync of each wallet")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.what == "producer":
        producer(args)
    elif args.what == "worker":
        worker(args)
    else:
        summarize(args.raw, args.top, args.only_thread)


if __name__ == "__main__":
    sys.exit(main())
