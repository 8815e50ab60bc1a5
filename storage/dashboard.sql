-- The dashboard's reads, one named block each (loaded by storage.queries with the others;
-- storage.analytics runs them on the read-only pool and shapes the rows into DataFrames).
-- Every figure is aggregated here, in PostgreSQL; parameters are always bound.
--
-- Time windows are half-open, [%(start)s, %(end)s) on enqueued_at.  The overview's aggregates over a
-- window read the rollups (storage/schema.sql) and, at the window's edges, raw rows.

-- dash_kpis --
-- The overview's headline numbers for a window.  Final operations come from the rollups
-- (sync_rollup_window: whole days, hours and minutes from the rollups, the part hours or minutes at the
-- edges from raw rows), so counts are exact and the percentiles are read off the latency histograms (a bin's upper
-- edge: within 19%% of percentile_cont); the operations not final are the small set of
-- sync_operations_active_idx.  The queue wait is that of finished operations.
WITH final AS (
    SELECT status, sum(syncs) AS syncs, sync_hist_sum(duration_hist) AS duration_hist,
           sync_hist_sum(queue_wait_hist) AS queue_wait_hist
    FROM sync_rollup_window(%(start)s, %(end)s)
    GROUP BY status
), totals AS (
    SELECT coalesce(sum(syncs), 0) AS finished,
           coalesce(sum(syncs) FILTER (WHERE status = 'succeeded'), 0) AS succeeded,
           coalesce(sum(syncs) FILTER (WHERE status = 'partial'), 0) AS partial,
           coalesce(sum(syncs) FILTER (WHERE status = 'failed'), 0) AS failed,
           sync_hist_sum(duration_hist) AS duration_hist, sync_hist_sum(queue_wait_hist) AS queue_wait_hist
    FROM final
), active AS (
    SELECT count(*) AS active
    FROM sync_operations
    WHERE status IN ('queued', 'running', 'retrying') AND enqueued_at >= %(start)s AND enqueued_at < %(end)s
)
SELECT (t.finished + a.active)::bigint AS syncs, t.succeeded::bigint AS succeeded, t.partial::bigint AS partial,
       t.failed::bigint AS failed, a.active,
       ARRAY[sync_hist_quantile(t.duration_hist, 0.5), sync_hist_quantile(t.duration_hist, 0.95)] AS duration_ms,
       sync_hist_quantile(t.queue_wait_hist, 0.95) AS queue_wait_p95_ms
FROM totals AS t CROSS JOIN active AS a;

-- dash_wallets_synced --
-- Distinct wallets (of a user) synced successfully in a window, and their users, from each pair's latest
-- successful operation (sync_rollup_wallet_latest): a pair whose latest lies in the window had a success
-- there, one whose latest is before it had none, and one whose latest is at or after the window's end
-- is looked up in its raw rows (sync_operations_wallet_idx).  The dashboard's windows end now, so those
-- are the few pairs that succeeded since: the cost is the window's pairs, not its operations.
WITH pairs AS (
    SELECT user_id
    FROM sync_rollup_wallet_latest
    WHERE last_enqueued_at >= %(start)s AND last_enqueued_at < %(end)s
    UNION ALL
    SELECT w.user_id
    FROM sync_rollup_wallet_latest AS w
    WHERE w.last_enqueued_at >= %(end)s
      AND EXISTS (SELECT 1 FROM sync_operations AS o
                  WHERE o.wallet_address = w.wallet_address AND o.user_id = w.user_id AND o.status = 'succeeded'
                    AND o.enqueued_at >= %(start)s AND o.enqueued_at < %(end)s)
)
-- per user first (a hash aggregate): twice as fast as count(DISTINCT user_id), which sorts
SELECT coalesce(sum(wallets), 0)::bigint AS wallets_synced, count(*) AS users_synced
FROM (SELECT user_id, count(*) AS wallets FROM pairs GROUP BY user_id) AS u;

-- dash_throughput --
-- Operations per time bucket and status; every bucket of the window appears, empty ones with 0.
-- Final operations are read from the rollups' counts (sync_rollup_count_window: hour rows, per-minute
-- counts and minute rows, raw rows for the part hours or minutes at the window's edges: exact for any
-- window, a cost flat in history; an hour row lands in the bucket of its hour, so a bucket is a whole
-- number of hours wherever hours are read, as the dashboard's 7 d and 30 d ranges are); operations not
-- yet final are the small set of sync_operations_active_idx.
WITH buckets AS (
    SELECT generate_series(date_bin(%(bucket)s, %(start)s::timestamptz, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                           %(end)s::timestamptz - interval '1 microsecond', %(bucket)s) AS bucket
), found AS (
    SELECT r.bucket AS at, r.status, r.syncs
    FROM sync_rollup_count_window(%(start)s, %(end)s) AS r
    UNION ALL
    SELECT o.enqueued_at, o.status, 1
    FROM sync_operations AS o
    WHERE o.status IN ('queued', 'running', 'retrying')
      AND o.enqueued_at >= %(start)s AND o.enqueued_at < %(end)s
), counts AS (
    SELECT date_bin(%(bucket)s, at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, status, sum(syncs) AS syncs
    FROM found
    GROUP BY 1, 2
)
SELECT b.bucket, s.status, coalesce(c.syncs, 0)::bigint AS syncs
FROM buckets AS b
CROSS JOIN unnest(ARRAY['succeeded', 'partial', 'failed', 'retrying', 'running', 'queued']) AS s(status)
LEFT JOIN counts AS c ON c.bucket = b.bucket AND c.status = s.status
ORDER BY b.bucket, s.status;

-- dash_duration_histogram --
-- Finished operations per duration bin (bin i holds edges[i] <= duration_ms < edges[i+1]) and status,
-- from the rollups' latency histograms.  The edges are powers of two, each the lower edge of a
-- histogram bin (four a doubling), so every histogram bin falls whole into one of them: exact counts.
WITH hists AS (
    SELECT status, sync_hist_sum(duration_hist) AS hist
    FROM sync_rollup_window(%(start)s, %(end)s)
    GROUP BY status
)
SELECT width_bucket(CASE WHEN b.i = 1 THEN 0 ELSE power(2::float8, (b.i - 2) / 4.0) END,
                    %(edges)s::float8[]) AS bin,
       h.status, sum(b.n)::bigint AS syncs
FROM hists AS h
CROSS JOIN unnest(h.hist) WITH ORDINALITY AS b(n, i)
WHERE b.n > 0
GROUP BY 1, 2
ORDER BY 1, 2;

-- dash_failures_by_error --
-- Failed operations of a window by error code: how many (rollups), for how many users and when the latest
-- was, from each (code, user) pair's latest failed operation (sync_rollup_failure_latest, read as
-- dash_wallets_synced reads its pairs: a pair whose latest is at or after the window's end is looked up
-- in the user's raw rows).
WITH counted AS (
    SELECT coalesce(nullif(error_code, ''), 'unknown') AS error_code, sum(syncs) AS failures
    FROM sync_rollup_window(%(start)s, %(end)s)
    WHERE status = 'failed'
    GROUP BY 1
), pairs AS (
    SELECT error_code, last_enqueued_at AS last_seen
    FROM sync_rollup_failure_latest
    WHERE last_enqueued_at >= %(start)s AND last_enqueued_at < %(end)s
    UNION ALL
    SELECT f.error_code, raw.last_seen
    FROM sync_rollup_failure_latest AS f
    CROSS JOIN LATERAL (
        SELECT max(o.enqueued_at) AS last_seen
        FROM sync_operations AS o
        WHERE o.user_id = f.user_id AND o.status = 'failed' AND coalesce(o.error_code, '') = f.error_code
          AND o.enqueued_at >= %(start)s AND o.enqueued_at < %(end)s
    ) AS raw
    WHERE f.last_enqueued_at >= %(end)s AND raw.last_seen IS NOT NULL
), users AS (
    SELECT coalesce(nullif(error_code, ''), 'unknown') AS error_code, count(*) AS users, max(last_seen) AS last_seen
    FROM pairs
    GROUP BY 1
)
SELECT c.error_code, c.failures::bigint AS failures, coalesce(u.users, 0) AS users, u.last_seen
FROM counted AS c LEFT JOIN users AS u USING (error_code)
ORDER BY failures DESC, error_code;

-- dash_by_trigger_priority --
-- Operations of a window by trigger and priority: outcomes, and the queue wait each got as
-- percentiles read off the rollups' queue-wait histograms (a bin's upper edge, within 19%%);
-- operations not yet final are counted from sync_operations_active_idx.
WITH final AS (
    SELECT trigger, priority, sum(syncs) AS syncs,
           sum(syncs) FILTER (WHERE status = 'succeeded') AS succeeded,
           sum(syncs) FILTER (WHERE status = 'failed') AS failed,
           sync_hist_sum(queue_wait_hist) AS queue_wait_hist
    FROM sync_rollup_window(%(start)s, %(end)s)
    GROUP BY 1, 2
), active AS (
    SELECT trigger, priority, count(*) AS syncs
    FROM sync_operations
    WHERE status IN ('queued', 'running', 'retrying') AND enqueued_at >= %(start)s AND enqueued_at < %(end)s
    GROUP BY 1, 2
)
SELECT trigger, priority, (coalesce(f.syncs, 0) + coalesce(a.syncs, 0))::bigint AS syncs,
       coalesce(f.succeeded, 0)::bigint AS succeeded, coalesce(f.failed, 0)::bigint AS failed,
       sync_hist_quantile(f.queue_wait_hist, 0.5) AS queue_wait_p50_ms,
       sync_hist_quantile(f.queue_wait_hist, 0.95) AS queue_wait_p95_ms
FROM final AS f FULL JOIN active AS a USING (trigger, priority)
ORDER BY 1, 2;

-- dash_chains --
-- Per chain: reads of the window's final operations, successes, errors, latency of the successful
-- reads (percentiles off the rollups' histograms, within 19%%), the commonest error code.
WITH reads AS (
    SELECT chain_id, status, error_code, sum(reads) AS reads, sync_hist_sum(duration_hist) AS duration_hist
    FROM sync_rollup_chain_window(%(start)s, %(end)s)
    GROUP BY 1, 2, 3
), chains AS (
    SELECT chain_id, sum(reads) AS reads,
           coalesce(sum(reads) FILTER (WHERE status = 'ok'), 0) AS ok,
           coalesce(sum(reads) FILTER (WHERE status = 'error'), 0) AS errors,
           sync_hist_sum(duration_hist) FILTER (WHERE status = 'ok') AS ok_hist
    FROM reads
    GROUP BY 1
)
SELECT c.chain_id, c.reads::bigint AS reads, c.ok::bigint AS ok, c.errors::bigint AS errors,
       sync_hist_quantile(c.ok_hist, 0.5) AS latency_p50_ms, sync_hist_quantile(c.ok_hist, 0.95) AS latency_p95_ms,
       (SELECT r.error_code FROM reads AS r
        WHERE r.chain_id = c.chain_id AND r.status = 'error' AND r.error_code <> ''
        ORDER BY r.reads DESC, r.error_code LIMIT 1) AS top_error
FROM chains AS c
ORDER BY c.chain_id;

-- dash_users --
-- Per-user statistics of a window, filtered, sorted and paginated here; `total` is the number of
-- users matching.  A window of %(days)s > 0 is the %(days)s closed UTC days before %(today)s and
-- today so far, [%(start)s = %(today)s - %(days)s days, %(end)s), read at a cost flat in history: the
-- final operations from the users' rows of that span (sync_rollup_user_since: its days and every later
-- one, one row per user), less the days of a lagging span that fell out of the window (none once
-- housekeeping has moved it after midnight); without a usable span (housekeeping more than half a span
-- behind, or a window in another time) from the window's user_day rows alone.  The operations not final
-- are the small set of sync_operations_active_idx.  A shorter window (%(days)s = 0) reads its raw rows,
-- exact to the second.  The wallets of every user are counted only when the page is sorted by them (a
-- one-time filter on %(sort)s); dash_user_details adds them, the p95 and the portfolio value for the
-- users of the page.
WITH plan AS (
    SELECT coalesce(t.through_day, '-infinity') AS through,
           coalesce(%(days)s > 0 AND t.through_day <= %(today)s - interval '1 day'
                    AND t.through_day >= %(today)s - (1 + %(days)s / 2) * interval '1 day', false) AS use_span
    FROM (SELECT 1) AS one
    LEFT JOIN sync_rollup_user_span_through AS t ON t.span_days = %(days)s
), extra AS (
    -- What the window holds beyond the span's rows, per user: few users (the active operations), or none.
    -- int and float8 sums: a sum of bigint is numeric, several times slower; a user's counts of a window
    -- fit an int, and a float8 sum of durations is exact below 2^53 ms.
    SELECT p.user_id, sum(p.syncs::int) AS syncs, sum(p.succeeded::int) AS succeeded,
           sum(p.partial::int) AS partial, sum(p.failed::int) AS failed,
           sum(p.duration_ms_sum::float8) AS duration_ms_sum, sum(p.duration_count::int) AS duration_count,
           max(p.last_enqueued_at) AS last_enqueued_at
    FROM (
        SELECT d.user_id, d.syncs, d.succeeded, d.partial, d.failed, d.duration_ms_sum, d.duration_count,
               d.last_enqueued_at
        FROM sync_rollup_user_day AS d
        WHERE %(days)s > 0 AND NOT (SELECT use_span FROM plan) AND d.day >= %(start)s AND d.day < %(end)s
        UNION ALL
        SELECT d.user_id, -d.syncs, -d.succeeded, -d.partial, -d.failed, -d.duration_ms_sum, -d.duration_count,
               NULL
        FROM sync_rollup_user_day AS d
        WHERE (SELECT use_span FROM plan)
          AND d.day > (SELECT through FROM plan) - %(days)s * interval '1 day' AND d.day < %(start)s
        UNION ALL
        SELECT o.user_id, 1, 0, 0, 0, 0, 0, o.enqueued_at
        FROM sync_operations AS o
        WHERE %(days)s > 0 AND o.status IN ('queued', 'running', 'retrying')
          AND o.enqueued_at >= %(start)s AND o.enqueued_at < %(end)s
        UNION ALL
        SELECT o.user_id, 1, (o.status = 'succeeded')::int, (o.status = 'partial')::int, (o.status = 'failed')::int,
               CASE WHEN o.status IN ('succeeded', 'partial', 'failed') THEN coalesce(o.duration_ms, 0) ELSE 0 END,
               (o.status IN ('succeeded', 'partial', 'failed') AND o.duration_ms IS NOT NULL)::int, o.enqueued_at
        FROM sync_operations AS o
        WHERE %(days)s = 0 AND o.enqueued_at >= %(start)s AND o.enqueued_at < %(end)s
    ) AS p
    WHERE %(user_pattern)s::text IS NULL OR p.user_id ILIKE %(user_pattern)s
    GROUP BY p.user_id
), span AS (
    SELECT s.user_id, s.syncs, s.succeeded, s.partial, s.failed, s.duration_ms_sum, s.duration_count,
           s.last_enqueued_at
    FROM sync_rollup_user_since AS s
    WHERE s.span_days = %(days)s AND (SELECT use_span FROM plan)
      AND (%(user_pattern)s::text IS NULL OR s.user_id ILIKE %(user_pattern)s)
), stats AS (
    -- The span's rows pass through, joined to the few users with more (no aggregate over ~users rows).
    SELECT user_id, coalesce(s.syncs, 0) + coalesce(e.syncs, 0) AS syncs,
           coalesce(s.succeeded, 0) + coalesce(e.succeeded, 0) AS succeeded,
           coalesce(s.partial, 0) + coalesce(e.partial, 0) AS partial,
           coalesce(s.failed, 0) + coalesce(e.failed, 0) AS failed,
           greatest(s.last_enqueued_at, e.last_enqueued_at) AS last_sync_at,
           (coalesce(s.duration_ms_sum, 0) + coalesce(e.duration_ms_sum, 0))
               / nullif(coalesce(s.duration_count, 0) + coalesce(e.duration_count, 0), 0) AS avg_duration_ms
    FROM span AS s
    FULL JOIN extra AS e USING (user_id)
    WHERE coalesce(s.syncs, 0) + coalesce(e.syncs, 0) > 0
), filtered AS (
    SELECT s.*, s.succeeded::float8 / nullif(s.succeeded + s.partial + s.failed, 0) AS success_rate
    FROM stats AS s
    WHERE s.syncs >= %(min_syncs)s
      AND (%(max_success_rate)s::float8 IS NULL
           OR s.succeeded::float8 / nullif(s.succeeded + s.partial + s.failed, 0) <= %(max_success_rate)s)
      AND (NOT %(failed_only)s OR s.failed > 0)
), wallets AS (
    SELECT user_id, count(*) AS wallets
    FROM tracked_wallets
    WHERE %(sort)s = 'wallets'
    GROUP BY user_id
), ranked AS (
    SELECT f.*,
           CASE %(sort)s WHEN 'syncs' THEN f.syncs::float8
                         WHEN 'succeeded' THEN f.succeeded::float8
                         WHEN 'failed' THEN f.failed::float8
                         WHEN 'success_rate' THEN f.success_rate
                         WHEN 'last_sync_at' THEN extract(epoch FROM f.last_sync_at)::float8
                         WHEN 'avg_duration_ms' THEN f.avg_duration_ms
                         WHEN 'wallets' THEN coalesce(w.wallets, 0)::float8 END AS sort_value
    FROM filtered AS f
    LEFT JOIN wallets AS w USING (user_id)
)
SELECT user_id, syncs::bigint AS syncs, succeeded::bigint AS succeeded, failed::bigint AS failed, success_rate,
       last_sync_at, avg_duration_ms, count(*) OVER () AS total
FROM ranked
ORDER BY CASE WHEN %(descending)s THEN sort_value END DESC NULLS LAST,
         CASE WHEN NOT %(descending)s THEN sort_value END ASC NULLS LAST,
         CASE WHEN %(descending)s AND %(sort)s = 'user_id' THEN user_id END DESC,
         user_id
LIMIT %(limit)s OFFSET %(offset)s;

-- dash_user_details --
-- For the users of a page: the latest operation of the window and its status, the p95
-- duration, the portfolio value (current holdings) and how many of it are unpriced, the wallets.
SELECT u.user_id, last.status AS last_status, last.enqueued_at AS last_sync_at, last.error_code AS last_error_code,
       (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY o.duration_ms)
        FROM sync_operations AS o
        WHERE o.user_id = u.user_id AND o.enqueued_at >= %(start)s AND o.enqueued_at < %(end)s
          AND o.status IN ('succeeded', 'partial', 'failed')) AS p95_duration_ms,
       h.portfolio_value_usd, h.unpriced_holdings,
       (SELECT count(*) FROM tracked_wallets AS t WHERE t.user_id = u.user_id) AS wallets
FROM unnest(%(user_ids)s::text[]) AS u(user_id)
LEFT JOIN LATERAL (
    SELECT o.status, o.enqueued_at, o.error_code
    FROM sync_operations AS o
    WHERE o.user_id = u.user_id AND o.enqueued_at >= %(start)s AND o.enqueued_at < %(end)s
    ORDER BY o.enqueued_at DESC
    LIMIT 1
) AS last ON true
LEFT JOIN LATERAL (
    SELECT sum(value_usd) AS portfolio_value_usd, count(*) FILTER (WHERE value_usd IS NULL) AS unpriced_holdings
    FROM holdings
    WHERE holdings.user_id = u.user_id
) AS h ON true;

-- dash_user_summary --
-- One user's headline numbers for a window, and their wallets and portfolio now.
SELECT count(*) AS syncs,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'partial') AS partial,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       max(enqueued_at) AS last_sync_at,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY duration_ms)
           FILTER (WHERE status IN ('succeeded', 'partial', 'failed')) AS duration_ms,
       (SELECT count(*) FROM tracked_wallets AS t WHERE t.user_id = %(user_id)s) AS wallets,
       (SELECT sum(value_usd) FROM holdings AS h WHERE h.user_id = %(user_id)s) AS portfolio_value_usd
FROM sync_operations
WHERE user_id = %(user_id)s AND enqueued_at >= %(start)s AND enqueued_at < %(end)s;

-- dash_user_timeline --
-- One user's operations of a window, newest first (at most %(limit)s): the points of the timeline.
SELECT id::text AS operation_id, enqueued_at, status, duration_ms, queue_wait_ms, wallet_address, trigger,
       priority, attempts, error_code
FROM sync_operations
WHERE user_id = %(user_id)s AND enqueued_at >= %(start)s AND enqueued_at < %(end)s
ORDER BY enqueued_at DESC
LIMIT %(limit)s;

-- dash_user_values --
-- One user's successful syncs of a window: each is a point of a wallet's value over time.
SELECT coalesce(finished_at, enqueued_at) AS at, wallet_address, total_value_usd
FROM sync_operations
WHERE user_id = %(user_id)s AND enqueued_at >= %(start)s AND enqueued_at < %(end)s
  AND status = 'succeeded' AND total_value_usd IS NOT NULL
ORDER BY enqueued_at DESC
LIMIT %(limit)s;

-- dash_user_holdings --
-- One user's current holdings by chain and token (summed over their wallets); as of the chains' latest
-- reads (the snapshots: a holdings row equal to the stored one is not rewritten by a sync).
SELECT h.chain_id, h.symbol, min(h.name) AS name, h.token_address, count(DISTINCT h.wallet_address) AS wallets,
       sum(h.balance) AS balance, max(h.price_usd) AS price_usd, sum(h.value_usd) AS value_usd,
       bool_or(h.value_usd IS NULL) AS unpriced, max(coalesce(s.as_of, h.as_of)) AS as_of,
       min(h.provider) AS provider
FROM holdings AS h
LEFT JOIN wallet_chain_snapshots AS s
  ON s.user_id = h.user_id AND s.wallet_address = h.wallet_address AND s.chain_id = h.chain_id
WHERE h.user_id = %(user_id)s
GROUP BY h.chain_id, h.symbol, h.token_address
ORDER BY h.chain_id, value_usd DESC NULLS LAST, h.symbol;

-- dash_operations_search --
-- Operations matching the search, newest first, one page of them.  An operation id is searched
-- across all time; every other filter within the window.
SELECT id::text AS operation_id, user_id, wallet_address, chain_ids, priority, trigger, status, attempts,
       enqueued_at, finished_at, queue_wait_ms, duration_ms, total_value_usd, error_code,
       left(error_message, 240) AS error_message
FROM sync_operations
WHERE (%(operation_id)s::uuid IS NOT NULL AND id = %(operation_id)s::uuid
       OR %(operation_id)s::uuid IS NULL AND enqueued_at >= %(start)s AND enqueued_at < %(end)s)
  AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s)
  AND (%(wallet)s::text IS NULL OR wallet_address = %(wallet)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(error_pattern)s::text IS NULL
       OR status IN ('failed', 'retrying')
          AND (error_code ILIKE %(error_pattern)s OR error_message ILIKE %(error_pattern)s))
ORDER BY enqueued_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s;

-- dash_window_partitions --
-- The parts of a window each partition of sync_operations holds, newest first.  A search for an error
-- text finds its matches through the trigram index, which gives them in no time order: over a whole
-- month its newest 25 meant every match read and sorted (0.6 s for a common text at 10M operations), so
-- it reads one partition's part at a time, newest first, and stops when it has its page.
SELECT greatest(lower_bound, %(start)s) AS start, least(upper_bound, %(end)s) AS end
FROM sync_operations_partition_bounds()
WHERE lower_bound < %(end)s AND upper_bound > %(start)s
ORDER BY lower_bound DESC;

-- dash_operations_count --
-- How many operations match the search (the same conditions as dash_operations_search), counted up to
-- %(count_limit)s + 1: an exact count of a month's operations reads every one of them, and a page of 25
-- needs only to know there are more than it can page through.
SELECT count(*) AS total
FROM (SELECT 1
      FROM sync_operations
      WHERE (%(operation_id)s::uuid IS NOT NULL AND id = %(operation_id)s::uuid
             OR %(operation_id)s::uuid IS NULL AND enqueued_at >= %(start)s AND enqueued_at < %(end)s)
        AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s)
        AND (%(wallet)s::text IS NULL OR wallet_address = %(wallet)s)
        AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
        AND (%(error_pattern)s::text IS NULL
             OR status IN ('failed', 'retrying')
                AND (error_code ILIKE %(error_pattern)s OR error_message ILIKE %(error_pattern)s))
      LIMIT %(count_limit)s + 1) AS matching;

-- dash_operation --
-- One operation's full record.
SELECT id::text AS operation_id, user_id, wallet_address, chain_ids, priority, trigger, provider, status, attempts,
       enqueued_at, started_at, finished_at, queue_wait_ms, duration_ms, holdings_count, total_value_usd,
       unpriced_count, chain_results, error_code, error_message, worker_id, message_id
FROM sync_operations
WHERE id = %(operation_id)s;

-- dash_operations_by_ids --
-- The audit rows behind a list of operation ids (the dead letters' operations).
SELECT id::text AS operation_id, user_id, wallet_address, chain_ids, priority, trigger, status, attempts,
       enqueued_at, started_at, finished_at, error_code, left(error_message, 240) AS error_message
FROM sync_operations
WHERE id = ANY(%(operation_ids)s::uuid[]);

-- dash_active_operations --
-- Operations not final, by status: how many and the oldest (the partial index of active ones).
SELECT status, count(*) AS operations, min(enqueued_at) AS oldest_enqueued_at,
       min(started_at) AS oldest_started_at
FROM sync_operations
WHERE status IN ('queued', 'running', 'retrying')
GROUP BY status
ORDER BY status;

-- dash_in_flight --
-- The running and retrying operations, longest running first (at most %(limit)s).
SELECT id::text AS operation_id, user_id, wallet_address, priority, trigger, status, attempts, enqueued_at,
       started_at, worker_id
FROM sync_operations
WHERE status IN ('running', 'retrying')
ORDER BY started_at NULLS LAST, enqueued_at
LIMIT %(limit)s;

-- dash_scheduler_ticks --
-- The latest scheduler ticks: what each requested, held back, and why.
SELECT schedule, tick_at, scheduler_id, started_at, finished_at, stale_count, requested_count, held_back_count,
       backlog, details
FROM scheduler_ticks
ORDER BY tick_at DESC, schedule
LIMIT %(limit)s;
