"""Fast, deterministic seeding of a realistic audit trail, for the dashboard's tests and benchmarks.

    from harness import seed
    with psycopg.connect(url, autocommit=True) as conn:
        seed.seed_operations(conn, rows=1_000_000, users=10_000, end=now, days=30)
        seed.seed_tracked_wallets(conn)
        seed.seed_holdings(conn)                       # every seeded user's current holdings
        seed.insert_operations(conn, [{...}, ...])     # hand-made rows (COPY), for exact expectations

Everything is generated inside PostgreSQL (``INSERT ... SELECT generate_series``),
so a million operations take seconds, not minutes; ``setseed`` makes a run
reproducible.  The data looks like production:

- users are named ``{prefix}00001``..; their popularity is skewed, each has one
  to three wallets, and each wallet always syncs the same chains;
- most syncs are ``scheduled`` (priority ``low``), the ``api`` share follows the
  time of day (``high`` or ``normal``), a few are ``cli`` and ``redrive``;
- about 4 % fail, with the error mix of a real provider; an *incident* (a third
  of all syncs failing with ``provider_timeout``) covers 2 % of the span, so the
  charts have something to show;
- durations and queue waits are log-normal; the most recent 90 seconds hold
  operations still ``queued``, ``running`` or ``retrying``;
- each chain has a result in ``chain_results`` (status, duration, value);
  a successful sync's ``total_value_usd`` is the sum of its chains and drifts
  slowly over time around a value of the wallet's own.

Rows are inserted in ``enqueued_at`` order, as a live system writes them (the
BRIN index on ``enqueued_at`` relies on that).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import psycopg

#: Chains per wallet, picked by ``(user + wallet) % 5``.
CHAIN_SETS = ("{1,8453}", "{1,10,137,8453,42161}", "{1}", "{8453,42161}", "{1,137}")

ERROR_CODES = (  # (code, share of the failures, transient) -- roughly what a real provider does
    ("provider_timeout", 0.35, True),
    ("provider_rate_limited", 0.20, True),
    ("provider_unavailable", 0.15, True),
    ("time_limit_exceeded", 0.10, True),
    ("provider_bad_response", 0.08, False),
    ("unsupported_chain", 0.05, False),
    ("expired", 0.04, False),
    ("malformed_message", 0.03, False),
)

_SEED_OPERATIONS = """
INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger, provider, status, attempts,
                             enqueued_at, started_at, finished_at, queue_wait_ms, duration_ms, holdings_count,
                             total_value_usd, unpriced_count, chain_results, error_code, error_message, worker_id,
                             message_id)
WITH base AS MATERIALIZED (
    SELECT g,
           %(end)s::timestamptz - %(span)s::interval * (1 - (g - 0.5) / %(rows)s) AS enqueued_at,
           1 + floor(power(random(), 1.6) * %(users)s)::int AS u,
           random() AS r_wallet, random() AS r_trigger, random() AS r_priority, random() AS r_status,
           random() AS r_error, random() AS r_attempts,
           -- two standard normal draws (Box-Muller), for log-normal durations and waits
           sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z1,
           sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z2,
           (g - 0.5) / %(rows)s AS pos
    FROM generate_series(%(first)s::int, %(last)s::int) AS g
), shaped AS MATERIALIZED (
    SELECT b.*,
           %(prefix)s || lpad(u::text, 5, '0') AS user_id,
           floor(r_wallet * (1 + u %% 3))::int AS w,
           extract(hour FROM enqueued_at AT TIME ZONE 'UTC') AS hour,
           %(end)s::timestamptz - enqueued_at < interval '90 seconds' AS active,
           pos BETWEEN 0.60 AND 0.62 AS incident
    FROM base b
), classified AS MATERIALIZED (
    SELECT s.*,
           '0x' || substr(md5(user_id || ':' || w), 1, 32) || substr(md5(user_id || ':' || w || ':b'), 1, 8)
               AS wallet_address,
           (%(chain_sets)s::text[])[1 + (u + w) %% 5]::int[] AS chain_ids,
           CASE WHEN r_trigger < 0.02 THEN 'redrive'
                WHEN r_trigger < 0.05 THEN 'cli'
                WHEN r_trigger < 0.05 + 0.20 + 0.15 * sin(2 * pi() * (hour - 9) / 24) THEN 'api'
                ELSE 'scheduled' END AS trigger,
           CASE WHEN active THEN (ARRAY['queued', 'running', 'retrying'])[1 + floor(r_status * 3)::int]
                WHEN r_status < (CASE WHEN incident THEN 0.33 ELSE 0.04 END) THEN 'failed'
                ELSE 'succeeded' END AS status
    FROM shaped s
), timed AS MATERIALIZED (
    SELECT c.*,
           CASE WHEN trigger = 'scheduled' THEN 'low'
                WHEN trigger = 'api' AND r_priority < 0.6 THEN 'high'
                ELSE 'normal' END AS priority,
           CASE WHEN status <> 'failed' THEN NULL
                WHEN incident THEN 'provider_timeout'
                ELSE (%(error_codes)s::text[])[1 + width_bucket(r_error, %(error_cumulative)s::float8[])]
                END AS error_code
    FROM classified c
), measured AS MATERIALIZED (
    SELECT t.*,
           least(3600000, round(exp(CASE priority WHEN 'low' THEN ln(45) + 1.0 * z1
                                                  WHEN 'high' THEN ln(12) + 0.5 * z1
                                                  ELSE ln(20) + 0.7 * z1 END)))::int AS queue_wait_ms,
           round(exp(ln(110) + 0.45 * z2) * (1 + 0.12 * (cardinality(chain_ids) - 1))
                 * CASE WHEN error_code IN ('provider_timeout', 'time_limit_exceeded') THEN 8 ELSE 1 END)::int
               AS duration_ms,
           -- the wallet's own value (100 $ .. 1 M$), drifting +-8 %% over days
           round((power(10::float8, 2 + ((u * 37 + w * 11) %% 400) / 100.0::float8)
                  * (1 + 0.08 * sin(extract(epoch FROM enqueued_at)::float8 / 86400 / 3 + u)))::numeric, 2)
               AS wallet_value,
           3 + (u * 7 + w) %% 20 AS holdings_count
    FROM timed t
)
SELECT md5(%(prefix)s || ':' || g)::uuid,
       user_id, wallet_address, chain_ids, priority, trigger, 'simulated', status,
       CASE WHEN status IN ('queued') THEN 0
            WHEN status = 'failed' AND error_code = ANY(%(transient)s::text[]) THEN 3
            WHEN status = 'failed' THEN 1
            WHEN r_attempts < 0.95 THEN 1 WHEN r_attempts < 0.99 THEN 2 ELSE 3 END,
       enqueued_at,
       CASE WHEN status <> 'queued' THEN enqueued_at + queue_wait_ms * interval '1 ms' END,
       CASE WHEN status IN ('succeeded', 'failed')
            THEN enqueued_at + (queue_wait_ms + duration_ms) * interval '1 ms' END,
       CASE WHEN status <> 'queued' THEN queue_wait_ms END,
       CASE WHEN status IN ('succeeded', 'failed') THEN duration_ms END,
       CASE WHEN status = 'succeeded' THEN holdings_count END,
       CASE WHEN status = 'succeeded' THEN wallet_value END,
       CASE WHEN status = 'succeeded' THEN u %% 3 END,
       CASE WHEN status IN ('queued', 'running') THEN '{}'::jsonb ELSE (
           SELECT jsonb_object_agg(c::text, CASE
               WHEN status IN ('failed', 'retrying') AND ord = 1 THEN jsonb_build_object(
                   'status', 'error', 'error_code', coalesce(error_code, 'provider_timeout'),
                   'error_message', 'simulated ' || coalesce(error_code, 'provider_timeout'),
                   'transient', coalesce(error_code, 'provider_timeout') = ANY(%(transient)s::text[]))
               ELSE jsonb_build_object(
                   'status', 'ok', 'holdings', greatest(1, holdings_count / cardinality(chain_ids)),
                   'value_usd', (CASE WHEN cardinality(chain_ids) = 1 THEN wallet_value
                                      WHEN ord > 1 THEN round(wallet_value * 0.5 / (cardinality(chain_ids) - 1), 2)
                                      ELSE wallet_value - (cardinality(chain_ids) - 1)
                                                          * round(wallet_value * 0.5 / (cardinality(chain_ids) - 1), 2)
                                      END)::text,
                   'unpriced', CASE WHEN ord = 1 THEN u %% 3 ELSE 0 END,
                   'duration_ms', round(duration_ms * (0.55 + 0.1 * ord + 0.05 * (c %% 7)))::int)
               END)
           FROM unnest(chain_ids) WITH ORDINALITY AS x(c, ord)) END,
       error_code,
       CASE WHEN error_code IS NOT NULL
            THEN 'chain ' || chain_ids[1] || ': simulated ' || replace(error_code, '_', ' ') END,
       CASE WHEN status <> 'queued' THEN 'worker-' || (g %% 4) || ':' || (1000 + g %% 2) END,
       CASE WHEN status <> 'queued' THEN md5('msg:' || %(prefix)s || g)::uuid::text END
FROM measured
ORDER BY g
"""

_SEED_TRACKED_WALLETS = """
INSERT INTO tracked_wallets AS t (user_id, wallet_address, chain_ids, added_at, last_requested_at,
                                  last_operation_id, last_success_at, last_failure_at, consecutive_failures)
SELECT DISTINCT ON (user_id, wallet_address)
       user_id, wallet_address, chain_ids,
       min(enqueued_at) OVER w,
       max(enqueued_at) FILTER (WHERE trigger <> 'scheduled') OVER w,
       id,
       max(finished_at) FILTER (WHERE status = 'succeeded') OVER w,
       max(finished_at) FILTER (WHERE status = 'failed') OVER w,
       CASE WHEN status = 'failed' THEN 1 ELSE 0 END
FROM sync_operations
WHERE user_id LIKE %(pattern)s
WINDOW w AS (PARTITION BY user_id, wallet_address)
ORDER BY user_id, wallet_address, enqueued_at DESC
ON CONFLICT (user_id, wallet_address) DO NOTHING
"""

# Current holdings from each wallet's last successful sync: every chain read ok gets its
# holdings, valued so that they add up (to rounding) to that chain's value in chain_results.
_SEED_HOLDINGS = """
WITH last AS (
    SELECT DISTINCT ON (user_id, wallet_address) id, user_id, wallet_address, chain_results, finished_at
    FROM sync_operations
    WHERE status = 'succeeded' AND user_id LIKE %(pattern)s
      AND (%(users)s::text[] IS NULL OR user_id = ANY(%(users)s::text[]))
    ORDER BY user_id, wallet_address, enqueued_at DESC
), chains AS (
    SELECT l.*, c.key::int AS chain_id, (c.value->>'value_usd')::numeric AS chain_value,
           least(12, greatest(1, (c.value->>'holdings')::int)) AS n
    FROM last l, jsonb_each(l.chain_results) AS c
    WHERE c.value->>'status' = 'ok'
), tokens AS (
    SELECT ch.*, k, (%(symbols)s::text[])[k] AS symbol, (%(prices)s::numeric[])[k] AS price_usd,
           (%(decimals)s::int[])[k] AS decimals,
           (1 + k %% 5) * (1.5 + sin(k * 7 + chain_id)) AS weight
    FROM chains ch, generate_series(1, ch.n) AS k
), valued AS (
    SELECT t.*, round(chain_value * weight::numeric / sum(weight::numeric) OVER (PARTITION BY id, chain_id) / price_usd, 6) AS balance
    FROM tokens t
)
INSERT INTO holdings (user_id, wallet_address, chain_id, token_address, symbol, name, decimals, raw_balance, balance,
                      price_usd, value_usd, price_source, priced_at, provider, operation_id, as_of)
SELECT user_id, wallet_address, chain_id,
       CASE WHEN k = 1 THEN '0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee'
            ELSE '0x' || substr(md5(chain_id || ':' || symbol), 1, 32) || substr(md5(symbol), 1, 8) END,
       symbol, symbol || ' token', decimals,
       balance * 10 ^ decimals, balance,
       CASE WHEN k = 12 THEN NULL ELSE price_usd END,
       CASE WHEN k = 12 THEN NULL ELSE balance * price_usd END,
       CASE WHEN k = 12 THEN NULL ELSE 'simulated' END,
       CASE WHEN k = 12 THEN NULL ELSE finished_at END,
       'simulated', id, finished_at
FROM valued
ON CONFLICT DO NOTHING
"""

_TOKENS = (  # symbol, price, decimals; the 12th is left unpriced
    ("ETH", "3150.25", 18), ("USDC", "1.00", 6), ("WBTC", "64210.50", 8), ("DAI", "1.00", 18),
    ("LINK", "14.82", 18), ("UNI", "7.45", 18), ("AAVE", "92.10", 18), ("ARB", "1.12", 18),
    ("OP", "2.31", 18), ("MKR", "2710.00", 18), ("LDO", "2.05", 18), ("SIMX", "1.00", 18),
)


def seed_operations(conn: psycopg.Connection, *, rows: int, users: int, end: dt.datetime, days: float = 30,
                    seed: float = 0.42, prefix: str = "user-", parallel: int = 1) -> None:
    """Insert ``rows`` operations of ``users`` users, spread over the ``days`` before ``end``.

    With ``parallel`` > 1, chunks of :data:`CHUNK_ROWS` rows and then the rollups' days are written by that
    many connections at once (to the database of ``conn``): a 10,000,000-row history in minutes, not hours."""
    cumulative, total = [], 0.0
    for _code, share, _transient in ERROR_CODES[:-1]:
        total += share
        cumulative.append(total)
    transient = [code for code, _share, is_transient in ERROR_CODES if is_transient]
    first, last = end - dt.timedelta(days=days), end
    add_partitions(conn, first, last)
    params = {"rows": rows, "users": users, "end": end, "span": dt.timedelta(days=days), "prefix": prefix,
              "chain_sets": list(CHAIN_SETS), "error_codes": [c for c, _s, _t in ERROR_CODES],
              "error_cumulative": cumulative, "transient": transient}

    def insert(chunk: psycopg.Connection, k: int) -> None:
        with chunk.cursor() as cur:
            # Each chunk its own seed, so the history is the same whichever connection writes which chunk.
            cur.execute("SELECT setseed(%s)", ((seed + k * 0.001) % 1,))
            cur.execute(_SEED_OPERATIONS, {**params, "first": k * CHUNK_ROWS + 1,
                                           "last": min(rows, (k + 1) * CHUNK_ROWS)})

    chunks = range((rows + CHUNK_ROWS - 1) // CHUNK_ROWS)
    _in_parallel(conn, parallel, chunks, insert)
    day = first.replace(hour=0, minute=0, second=0, microsecond=0)
    _in_parallel(conn, parallel, range((last - day).days + 1),
                 lambda c, d: _roll_up_seeded(c, max(first, day + dt.timedelta(days=d)),
                                              min(last, day + dt.timedelta(days=d + 1, seconds=-1)), prefix))


#: Rows a seeding statement writes at once: its working set stays in memory.
CHUNK_ROWS = 250_000


def _in_parallel(conn: psycopg.Connection, parallel: int, items: Iterable[int],
                 work: Callable[[psycopg.Connection, int], None]) -> None:
    """``work(connection, item)`` for every item, on ``conn`` alone or on ``parallel`` new connections."""
    if parallel <= 1:
        for item in items:
            work(conn, item)
        return
    pending = list(items)
    lock = threading.Lock()

    def drain() -> None:
        with psycopg.connect(conn.info.dsn, password=conn.info.password or None, autocommit=True) as own:
            while True:
                with lock:
                    if not pending:
                        return
                    item = pending.pop(0)
                work(own, item)

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for future in [pool.submit(drain) for _ in range(parallel)]:
            future.result()


def seed_tracked_wallets(conn: psycopg.Connection, *, prefix: str = "user-") -> None:
    """One tracked wallet per seeded ``(user, wallet)``, with its last operation and health."""
    conn.execute(_SEED_TRACKED_WALLETS, {"pattern": _like_prefix(prefix)})


def seed_holdings(conn: psycopg.Connection, *, prefix: str = "user-", users: Sequence[str] | None = None) -> None:
    """Current holdings of the seeded users (all, or ``users``), from each wallet's last successful sync."""
    conn.execute(_SEED_HOLDINGS, {
        "pattern": _like_prefix(prefix), "users": list(users) if users is not None else None,
        "symbols": [t[0] for t in _TOKENS], "prices": [Decimal(t[1]) for t in _TOKENS],
        "decimals": [t[2] for t in _TOKENS],
    })


_COLUMNS = ("id", "user_id", "wallet_address", "chain_ids", "priority", "trigger", "provider", "status", "attempts",
            "enqueued_at", "started_at", "finished_at", "queue_wait_ms", "duration_ms", "holdings_count",
            "total_value_usd", "unpriced_count", "chain_results", "error_code", "error_message", "worker_id",
            "message_id")


def insert_operations(conn: psycopg.Connection, rows: Iterable[Mapping[str, Any]]) -> int:
    """COPY hand-made operation rows (missing columns get sensible values); returns how many."""
    rows = list(rows)
    if rows:
        times = [row["enqueued_at"] for row in rows]
        add_partitions(conn, min(times), max(times))
    with conn.cursor() as cur, cur.copy(f"COPY sync_operations ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_value(name, row) for name in _COLUMNS])
    if rows:
        conn.execute(_ROLL_UP + "o.id = ANY(%(ids)s::uuid[])))", {"ids": [str(row["id"]) for row in rows]})
    return len(rows)


#: Count seeded final operations into the rollups: they were written final already, so the final-status
#: trigger never saw them (a condition on ``o`` completes the statement).
_ROLL_UP = ("SELECT sync_rollup_add(ARRAY(SELECT o FROM sync_operations AS o"
            " WHERE o.status IN ('succeeded', 'partial', 'failed') AND ")


def _roll_up_seeded(conn: psycopg.Connection, first: dt.datetime, last: dt.datetime, prefix: str) -> None:
    hour = first.replace(minute=0, second=0, microsecond=0)
    while hour <= last:
        conn.execute(_ROLL_UP + "o.user_id LIKE %(pattern)s AND o.enqueued_at >= %(lo)s AND o.enqueued_at < %(hi)s))",
                     {"pattern": _like_prefix(prefix), "lo": hour, "hi": hour + dt.timedelta(hours=1)})
        hour += dt.timedelta(hours=1)


def add_partitions(conn: psycopg.Connection, first: dt.datetime, last: dt.datetime) -> None:
    """The weekly partitions of ``sync_operations`` from ``first`` to ``last`` (housekeeping makes only
    those ahead; seeded history lies in the past)."""
    conn.execute("SELECT sync_operations_add_partitions(%s, %s::timestamptz + interval '1 second')", (first, last))


def _value(name: str, row: Mapping[str, Any]) -> Any:
    value = row.get(name)
    if name == "chain_results":
        return json.dumps(value or {}, default=str)
    if value is None:
        return {"chain_ids": [1], "priority": "normal", "trigger": "api", "provider": "simulated",
                "status": "succeeded", "attempts": 1}.get(name)
    return value


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def load_everything(conn: psycopg.Connection, *, rows: int, users: int, end: dt.datetime, days: float = 30,
                    prefix: str = "user-", holdings_for: Sequence[str] | None = None, analyze: bool = True) -> None:
    """Operations, tracked wallets and holdings in one go, then ANALYZE (what the planner needs)."""
    seed_operations(conn, rows=rows, users=users, end=end, days=days, prefix=prefix)
    seed_tracked_wallets(conn, prefix=prefix)
    seed_holdings(conn, prefix=prefix, users=holdings_for)
    if analyze:
        for table in ("sync_operations", "tracked_wallets", "holdings"):
            conn.execute(f"ANALYZE {table}")
