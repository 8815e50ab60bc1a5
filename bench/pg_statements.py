"""Where PostgreSQL's time goes on a sync, statement by statement.

    .venv/bin/python -m bench.pg_statements [noop | realistic | sync] [--n 3000] [--top 15] [--setting NAME=VALUE]

Starts a PostgreSQL cluster of its own (the installed binaries, on loopback, ``pg_stat_statements``
preloaded, ``fsync=off`` as every cluster of ``harness.servers``), runs one of :mod:`bench.project`'s
measurements against it through the real worker (``noop``: ``throughput``, 1 chain, 1 token, 0 ms;
``realistic``: five chains, the default token lists, a first sync then a re-sync of each wallet;
``sync``: 2 chains, 20 tokens, 100 ms), and prints the statements by total execution time: calls, rows,
time per call and per finished operation, shared buffers hit and WAL bytes per operation.

A statement run inside another (the rollup trigger's) is counted on its own line *and* inside the line of
the statement that fired it (``pg_stat_statements.track = all``).  Times are wall-clock inside the
server: on a machine the run saturates they include waiting for a core, so read the shares, not the
milliseconds.  The operations are those the worker finished (the rows ``finish_attempts`` returned).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from harness.servers import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
MODES = {"noop": ["throughput"], "realistic": ["realistic"], "sync": ["sync"]}
_FINISH = "-- End a batch of attempts"
#: What the measurement itself needs of the server; ``--setting`` may not change these.
_STATEMENT_STATS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all",
                    "pg_stat_statements.track_planning": "on", "pg_stat_statements.max": "2000"}


def label(query: str) -> str:
    """A statement's name for the table: the start of its text (its leading comment, for the named queries)."""
    return " ".join(query.split())[:90]


def _measure(directory: Path, args: argparse.Namespace) -> list[tuple] | None:
    """Run the measurement on a cluster of its own in ``directory``; its statements, or None if it failed."""
    server = PostgresServer(directory, settings={**_STATEMENT_STATS, **dict(args.setting)})
    try:
        try:
            server.init()
        except RuntimeError:  # a setting it refused: its own message is not kept (harness.servers)
            print(f"PostgreSQL did not start with {_settings_text(args.setting)}: check each name and value",
                  file=sys.stderr)
            return None
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
        run = subprocess.run([sys.executable, "-m", "bench.project", *MODES[args.mode], "--n", str(args.n)],
                             cwd=ROOT, env={**os.environ, "DATABASE_URL": server.url()}, capture_output=True,
                             text=True, timeout=1800)
        if run.returncode or not run.stdout.strip():
            print(run.stdout, run.stderr, sep="\n", file=sys.stderr)
            return None
        print(run.stdout.strip().splitlines()[-1])
        with psycopg.connect(server.url(), autocommit=True) as conn:
            return conn.execute(
                "SELECT query, calls, rows, total_exec_time, shared_blks_hit, wal_bytes, plans, total_plan_time "
                "FROM pg_stat_statements "
                "WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC").fetchall()
    finally:
        server.cleanup()


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not name or not equals:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    if name in _STATEMENT_STATS:
        raise argparse.ArgumentTypeError(f"{name} is set by the measurement itself")
    return name, value


def _settings_text(settings: list[tuple[str, str]]) -> str:
    return ", ".join(f"{name}={value}" for name, value in settings) or "the default settings"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="noop", choices=sorted(MODES))
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE", type=_setting,
                        help="a server setting besides the defaults (repeatable), to compare one against them")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-pg-statements-") as directory:
        rows = _measure(Path(directory), args)
    if rows is None:
        return 1

    ops = sum(r[2] for r in rows if r[0].lstrip().startswith(_FINISH)) or 1
    total = sum(r[3] for r in rows if r[0].lstrip().startswith(_FINISH))
    print(f"\n{args.mode}, {_settings_text(args.setting)}: {ops:,} operations finished; finish_attempts (with "
          f"the rollup trigger it fires) {total:,.0f} ms in all\n")
    print(f"{'ms total':>9} {'calls':>7} {'ms/call':>8} {'ms/op':>7} {'rows':>7} {'buf/op':>7} {'WAL B/op':>9} "
          f"{'plans':>7} {'plan ms':>8}  statement")
    for query, calls, nrows, ms, hit, wal, plans, plan_ms in rows[:args.top]:
        print(f"{ms:9,.0f} {calls:7,} {ms / calls:8.3f} {ms / ops:7.3f} {nrows:7,} {hit / ops:7.0f} "
              f"{int(wal) / ops:9,.0f} {plans:7,} {plan_ms:8,.0f}  {label(query)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
