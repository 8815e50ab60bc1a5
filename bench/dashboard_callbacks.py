"""Latency of every dashboard callback on a large audit trail.

    .venv/bin/python -m bench.dashboard_callbacks [--rows 1000000[,3000000,...]] [--users 10000] [--days 30]
                                                   [--repeat 15] [--ranges 24h,7d,30d] [--pages overview,users]
                                                   [--keep-db PREFIX]

Seeds a throwaway database (bench.sandbox) with ``--rows`` operations of ``--users`` users over
``--days`` days ending now, their tracked wallets and current holdings (harness.seed, generated
inside PostgreSQL), plus a few hundred dead letters in the Redis namespace; brings the rollups to
where housekeeping keeps them (minutes compacted into hours, closed days rolled up) and VACUUM
ANALYZE, as autovacuum would have done on a live table.  With ``--keep-db PREFIX`` the database is
``PREFIX_<rows>``, seeded only if empty and kept: a re-measure skips the seeding (its data then ends
when it was seeded, and the windows still end now).  Then, for each time range, calls every page's callbacks ``--repeat`` times (after
one warm-up call) through the Flask test client, i.e. the whole HTTP round trip of a
``_dash-update-component`` request (JSON in, query, figure, JSON out), one at a time, and
prints p50/p95/max per callback.  Finally it fires each page's callbacks all at once, as a
browser does on page load, and prints the page's wall time.  Several ``--rows`` are measured one
after the other, each in its own process, and their figures printed side by side at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench import sandbox

# callback -> (output, inputs builder(range_key) -> [(id, property, value)], page)
CALLBACKS: dict[str, tuple[list[tuple[str, str]], object, str]] = {}


def _window_inputs(key: str) -> list[tuple[str, str, object]]:
    return [("time-range", "value", key), ("refresh", "n_intervals", 0)]


def _define() -> None:
    from dashboard.pages import overview, queues

    for name in ("syncs", "success_rate", "duration_p50", "duration_p95", "queue_wait_p95", "failures", "active"):
        assert name in overview.KPIS
    CALLBACKS.update({
        "overview.kpis": ([(f"kpi-{n}", "children") for n in overview.KPIS], _window_inputs, "overview"),
        "overview.wallets": ([("kpi-wallets", "children")], _window_inputs, "overview"),
        "overview.throughput": ([("overview-throughput", "figure")], _window_inputs, "overview"),
        "overview.durations": ([("overview-durations", "figure")], _window_inputs, "overview"),
        "overview.failures": ([("overview-failures", "figure")], _window_inputs, "overview"),
        "overview.triggers": ([("overview-triggers", "figure")], _window_inputs, "overview"),
        "overview.chains": ([("overview-chains", "figure")], _window_inputs, "overview"),
        "users.table (by syncs)": (
            [("users-table", "data"), ("users-table", "page_count"), ("users-count", "children")],
            lambda k: _users_inputs(k, "syncs"), "users"),
        "users.table (by value)": (
            [("users-table", "data"), ("users-table", "page_count"), ("users-count", "children")],
            lambda k: _users_inputs(k, "portfolio_value_usd"), "users"),
        "users.table (by p95)": (
            [("users-table", "data"), ("users-table", "page_count"), ("users-count", "children")],
            lambda k: _users_inputs(k, "p95_duration_ms"), "users"),
        "users.table (filtered)": (
            [("users-table", "data"), ("users-table", "page_count"), ("users-count", "children")],
            lambda k: _users_inputs(k, "syncs", text="user-00", max_rate=95), "users"),
        "users.drilldown (busiest user)": (
            [("user-summary", "children"), ("user-timeline", "figure"), ("user-values", "figure"),
             ("user-holdings", "figure"), ("user-holdings-table", "data"), ("user-recent", "data")],
            lambda k: [*_window_inputs(k), ("user-id", "value", "user-00001")], "users"),
        "operations.search (all, page 1)": (
            [("ops-table", "data"), ("ops-table", "page_count"), ("ops-count", "children")],
            lambda k: _ops_inputs(k), "operations"),
        "operations.search (page 200)": (
            [("ops-table", "data"), ("ops-table", "page_count"), ("ops-count", "children")],
            lambda k: _ops_inputs(k, page=200), "operations"),
        "operations.search (failed + text)": (
            [("ops-table", "data"), ("ops-table", "page_count"), ("ops-count", "children")],
            lambda k: _ops_inputs(k, statuses=["failed"], text="rate limited"), "operations"),
        "operations.search (failed + rare text)": (  # a text no failure holds
            [("ops-table", "data"), ("ops-table", "page_count"), ("ops-count", "children")],
            lambda k: _ops_inputs(k, statuses=["failed"], text="quota exhausted"), "operations"),
        "operations.search (user)": (
            [("ops-table", "data"), ("ops-table", "page_count"), ("ops-count", "children")],
            lambda k: _ops_inputs(k, user="user-00042"), "operations"),
        "queues.redis": ([(f"q-kpi-{n}", "children") for n in queues.QUEUE_KPIS]
                         + [("queues-table", "data"), ("queues-figure", "figure"), ("workers-table", "data")],
                         lambda k: [("refresh", "n_intervals", 0)], "queues"),
        "queues.active": ([("active-summary", "children"), ("inflight-table", "data")],
                          lambda k: [("refresh", "n_intervals", 0)], "queues"),
        "queues.scheduler": ([("scheduler-note", "children"), ("scheduler-figure", "figure"),
                              ("ticks-table", "data")], lambda k: [("refresh", "n_intervals", 0)], "queues"),
        "deadletters.list": (
            [("dl-table", "data"), ("dl-table", "page_count"), ("dl-count", "children"), ("dl-queue", "options")],
            lambda k: _dl_inputs(k), "dead-letters"),
        "deadletters.list (user filter)": (
            [("dl-table", "data"), ("dl-table", "page_count"), ("dl-count", "children"), ("dl-queue", "options")],
            lambda k: _dl_inputs(k, user="user-00007"), "dead-letters"),
    })


def _users_inputs(key, sort, *, text=None, max_rate=None):
    return [*_window_inputs(key), ("users-filter", "value", text), ("users-min-syncs", "value", 0),
            ("users-max-rate", "value", max_rate), ("users-failed-only", "value", []),
            ("users-table", "page_current", 0), ("users-table", "page_size", 25),
            ("users-table", "sort_by", [{"column_id": sort, "direction": "desc"}])]


def _ops_inputs(key, *, page=0, statuses=None, text=None, user=None):
    return [*_window_inputs(key), ("ops-operation-id", "value", None), ("ops-user", "value", user),
            ("ops-wallet", "value", None), ("ops-status", "value", statuses or []), ("ops-error", "value", text),
            ("ops-table", "page_current", page), ("ops-table", "page_size", 25)]


def _dl_inputs(key, *, user=None):
    return [*_window_inputs(key), ("dl-version", "data", 0), ("dl-queue", "value", None), ("dl-actor", "value", None),
            ("dl-user", "value", user), ("dl-error-code", "value", None), ("dl-text", "value", None),
            ("dl-table", "page_current", 0), ("dl-table", "page_size", 25)]


def payload(outputs: list[tuple[str, str]], inputs: list[tuple[str, str, object]]) -> dict:
    """The body the Dash renderer posts to ``_dash-update-component`` for one callback."""
    outs = [{"id": i, "property": p} for i, p in outputs]
    return {
        "output": "..".join(f"{i}.{p}" for i, p in outputs) if len(outputs) > 1 else f"{outputs[0][0]}.{outputs[0][1]}",
        "outputs": outs if len(outs) > 1 else outs[0],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"], "state": [],
    }


def fix_multi_output(body: dict) -> dict:
    # Dash names a multi-output callback "..a.children...b.figure.."
    outs = body["outputs"]
    if isinstance(outs, list):
        body["output"] = ".." + "...".join(f"{o['id']}.{o['property']}" for o in outs) + ".."
    return body


def seed_dead_letters(broker, count: int) -> None:
    """``count`` dead-lettered sync messages of the seeded users' failed operations (as the worker leaves them)."""
    from dramatiq.message import Message

    from storage.pool import get_pool

    with get_pool().connection() as conn:
        rows = conn.execute("SELECT id::text, priority FROM sync_operations WHERE status = 'failed' "
                            "ORDER BY enqueued_at DESC LIMIT %s", (count,)).fetchall()
    queues = {"high": "sync_high", "normal": "sync", "low": "sync_low"}
    actors_ = {"high": "sync_portfolio_high", "normal": "sync_portfolio", "low": "sync_portfolio_low"}
    pipe = broker.client.pipeline(transaction=False)
    now_ms = int(time.time() * 1000)
    for i, row in enumerate(rows):
        queue = queues[row["priority"]]
        message = Message(queue_name=queue, actor_name=actors_[row["priority"]], args=(row["id"],), kwargs={},
                          options={"retries": 2, "traceback": "Traceback ...\nSyncAttemptFailed: provider_timeout"})
        redis_id = f"bench-{i}"
        pipe.zadd(f"{broker.namespace}:{queue}.XQ", {redis_id: now_ms - i * 60_000})
        pipe.hset(f"{broker.namespace}:{queue}.XQ.msgs", redis_id, message.encode())
    pipe.execute()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def seed_history(rows: int, users: int, days: float) -> None:
    """Seed the sandbox database unless it holds operations already (a kept one), then bring its rollups to
    where housekeeping keeps them, and print what it holds."""
    import psycopg

    from harness import seed
    from storage import scheduling

    started = time.perf_counter()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        fresh = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM sync_operations)").fetchone()[0]
        if fresh:
            seed.seed_operations(conn, rows=rows, users=users, end=dt.datetime.now(dt.timezone.utc), days=days,
                                 parallel=2)
            seed.seed_tracked_wallets(conn)
            seed.seed_holdings(conn)
    # As housekeeping would have: minute rollups rolled into hours, closed days' hours into days.
    from actors.services.scheduler import ROLLUP_COUNTS_KEPT_H, ROLLUP_MINUTES_KEPT_H

    compacted = scheduling.compact_rollups(keep_minutes_h=ROLLUP_MINUTES_KEPT_H, max_hours=100_000)
    scheduling.trim_rollup_counts(keep_counts_h=ROLLUP_COUNTS_KEPT_H)
    days_built = scheduling.compact_rollup_days(max_days=100_000)
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        if fresh or compacted.hours or days_built.days:
            # The seed counts its 720 hours one after the other with no vacuum between, leaving the latest-pair
            # tables (updated per pair and hour) several times their size; a live one is vacuumed as it goes.
            conn.execute("VACUUM FULL sync_rollup_wallet_latest, sync_rollup_failure_latest")
            conn.execute("VACUUM ANALYZE")
        held = conn.execute(
            "SELECT (SELECT pg_size_pretty(sum(pg_total_relation_size(partition)))"
            "        FROM sync_operations_partition_bounds()), (SELECT count(*) FROM sync_operations),"
            " (SELECT count(*) FROM holdings), (SELECT count(*) FROM sync_rollup_minute),"
            " (SELECT count(*) FROM sync_rollup_hour), (SELECT count(*) FROM sync_rollup_day)").fetchone()
    print(f"{'seeded' if fresh else 'kept'} {held[1]:,} operations ({held[0]} with indexes), {held[2]:,} holdings; "
          f"rollup rows: {held[3]:,} minute, {held[4]:,} hour, {held[5]:,} day ({compacted.hours:,} hours and "
          f"{days_built.days:,} days compacted now), in {time.perf_counter() - started:.0f} s", flush=True)


def rollup_rows_read(ranges: list[str]) -> dict[str, tuple[int, int, int]]:
    """Per range, the rows sync_rollup_window, sync_rollup_chain_window and sync_rollup_count_window return:
    what the overview's aggregates sum, a figure the machine's load does not move."""
    from dashboard import timerange
    from storage.pool import get_pool

    rows = {}
    with get_pool().connection() as conn:
        for key in ranges:
            window = timerange.window(key)
            rows[key] = tuple(conn.execute(
                "SELECT (SELECT count(*) FROM sync_rollup_window(%(start)s, %(end)s)) AS w,"
                " (SELECT count(*) FROM sync_rollup_chain_window(%(start)s, %(end)s)) AS c,"
                " (SELECT count(*) FROM sync_rollup_count_window(%(start)s, %(end)s)) AS n",
                window.params()).fetchone().values())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000",
                        help="operations to seed; several (comma-separated) are measured one after the other, "
                             "each in its own process and database, and printed side by side")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--ranges", default="24h,7d,30d")
    parser.add_argument("--dead-letters", type=int, default=500)
    parser.add_argument("--pages", default="", help="time only these pages' callbacks (comma-separated; all by default)")
    parser.add_argument("--keep-db", metavar="PREFIX", default=None,
                        help="seed into (or reuse) the database PREFIX_<rows> and keep it for a later run")
    parser.add_argument("--json", metavar="PATH", default=None, help=argparse.SUPPRESS)  # a size's figures, for the parent
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    if len(sizes) > 1:
        compare_sizes(sizes, args)
        return
    measure(args, sizes[0])


def compare_sizes(sizes: list[int], args: argparse.Namespace) -> None:
    """Measure each size in a child process (its own settings, pools and database), then one table."""
    figures: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            out = os.path.join(tmp, f"{rows}.json")
            child = ["--rows", str(rows), "--users", str(args.users), "--days", str(args.days), "--repeat",
                     str(args.repeat), "--ranges", args.ranges, "--dead-letters", str(args.dead_letters),
                     "--pages", args.pages, *(["--keep-db", args.keep_db] if args.keep_db else [])]
            print(f"\n===== {rows:,} operations =====", flush=True)
            subprocess.run([sys.executable, "-m", "bench.dashboard_callbacks", *child, "--json", out], check=True)
            with open(out) as f:
                figures[rows] = json.load(f)
    ranges = figures[sizes[0]]["ranges"]
    columns = [(rows, key) for key in ranges for rows in sizes]
    label = {rows: f"{rows / 1e6:g}M" for rows in sizes}
    print("\nside by side, p50 / p95 ms (the cost flat in history if each range's sizes agree):")
    print(f"{'':<36}" + "".join(f"{label[r] + ' ' + k:>14}" for r, k in columns))
    for section in ("callbacks", "pages"):
        for name in figures[sizes[0]][section]:
            cells = "".join(f"{'%.0f / %.0f' % tuple(figures[r][section][name][k]):>14}" for r, k in columns)
            print(f"{(name if section == 'callbacks' else 'whole ' + name + ' page'):<36}" + cells)
    print(f"{'rows summed: window/chain/counts':<36}"
          + "".join(f" {'/'.join(str(n) for n in figures[r]['rows'][k]):>13}" for r, k in columns))
    print(f"load average at the end: {open('/proc/loadavg').read().split()[:3]}")


def measure(args: argparse.Namespace, rows: int) -> None:
    keep = f"{args.keep_db}_{rows}" if args.keep_db else None
    results: dict = {"ranges": args.ranges.split(","), "callbacks": {}, "pages": {}}
    with sandbox.enter(keep=keep, LOG_LEVEL="WARNING"):
        seed_history(rows, args.users, args.days)
        from actors.services import context
        from dashboard import app as dashboard_app

        # The dashboard's own broker: dramatiq.get_broker() would make a default one, without the project's clock.
        seed_dead_letters(context.broker(), args.dead_letters)
        _define()
        if args.pages:
            wanted = set(args.pages.split(","))
            for name in [n for n, (_o, _i, page) in CALLBACKS.items() if page not in wanted]:
                del CALLBACKS[name]
        client = dashboard_app.server.test_client()

        def call(name: str, key: str) -> float:
            outputs, inputs, _page = CALLBACKS[name]
            body = fix_multi_output(payload(outputs, inputs(key)))
            t0 = time.perf_counter()
            response = client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")
            elapsed = (time.perf_counter() - t0) * 1000
            if response.status_code != 200 or b"navailable: " in response.data:
                raise RuntimeError(f"{name} [{key}]: HTTP {response.status_code} {response.data[:300]!r}")
            return elapsed

        ranges = results["ranges"]
        results["rows"] = rollup_rows_read(ranges)
        print("\nrows the overview's aggregates sum per range (rollup rows, and raw rows grouped at the edges), "
              "window / chain window / counts: " + "   ".join(f"{k}: {'/'.join(f'{n:,}' for n in results['rows'][k])}"
                                                          for k in ranges))
        print(f"\nper callback, one at a time (ms; {args.repeat} calls after a warm-up, Flask test client):")
        print(f"{'callback':<36}" + "".join(f"{k + ' p50':>10}{k + ' p95':>10}" for k in ranges) + f"{'max':>9}")
        worst = 0.0
        for name in CALLBACKS:
            cells, top = [], 0.0
            results["callbacks"][name] = {}
            for key in ranges:
                call(name, key)
                times = [call(name, key) for _ in range(args.repeat)]
                results["callbacks"][name][key] = (statistics.median(times), percentile(times, 0.95))
                cells.append(f"{statistics.median(times):>10.0f}{percentile(times, 0.95):>10.0f}")
                top = max(top, max(times))
                worst = max(worst, percentile(times, 0.95))
            print(f"{name:<36}" + "".join(cells) + f"{top:>9.0f}")
        print(f"\nworst p95 of any callback: {worst:.0f} ms")

        print("\nwhole page, its callbacks fired together as on page load (wall ms, p50 / p95 of "
              f"{max(3, args.repeat // 3)} loads, gunicorn-like: 4 threads):")
        pages = sorted({page for _o, _i, page in CALLBACKS.values()})
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for page in pages:
                names = [n for n, (_o, _i, p) in CALLBACKS.items() if p == page and "(" not in n or
                         n in ("users.table (by syncs)", "users.drilldown (busiest user)",
                               "operations.search (all, page 1)", "deadletters.list") and p == page]
                row = []
                results["pages"][page] = {}
                for key in ranges:
                    walls = []
                    for _ in range(max(3, args.repeat // 3)):
                        t0 = time.perf_counter()
                        list(pool.map(lambda n: call(n, key), names))
                        walls.append((time.perf_counter() - t0) * 1000)
                    results["pages"][page][key] = (statistics.median(walls), percentile(walls, 0.95))
                    row.append(f"{key}: {statistics.median(walls):.0f} / {percentile(walls, 0.95):.0f}")
                print(f"  {page:<14} ({len(names)} callbacks)  " + "   ".join(row))
        print(f"\ncpus: {os.cpu_count()}, load average: {open('/proc/loadavg').read().split()[:3]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
