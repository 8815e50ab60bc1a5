-- The scheduler's SQL: tracked wallets (what is stale, their health), scheduler ticks and retention.
-- Loaded into storage.queries.QUERIES with queries.sql (same format: `-- name --`, then a line of
-- description).  Durations are bound as seconds or days, never formatted in.

-- select_stale_wallets --
-- What is stale now (never "what was due at the tick", so ticks missed while no scheduler ran are
-- caught up by the next one).  A wallet is tracked and 'active', and its last success is older than
-- its tier's interval or it never succeeded: tier 'active' if its owner requested a sync within the
-- window, else 'idle'.  Not requested: a wallet whose last operation is still in flight, or one
-- backing off after consecutive failures (until last_failure_at + min(cap, base * 2^(n-1))).
-- Rows: the wallets to request, longest overdue first, at most %(limit)s; each row also carries the
-- counts of the whole selection, and there is a single row with a null wallet when none is left.
-- Each tier is its own branch so each can use its index: the active tier is the few wallets
-- requested within the window, the idle tier the few whose last success is older than a day.
WITH candidates AS (
    SELECT user_id, wallet_address, chain_ids, last_operation_id, last_failure_at, consecutive_failures,
           'active' AS tier,
           coalesce(last_success_at + %(active_interval_s)s * interval '1 second', '-infinity') AS due_at
    FROM tracked_wallets
    WHERE status = 'active'
      AND last_requested_at > now() - %(active_window_s)s * interval '1 second'
      AND (last_success_at IS NULL OR last_success_at <= now() - %(active_interval_s)s * interval '1 second')
    UNION ALL
    SELECT user_id, wallet_address, chain_ids, last_operation_id, last_failure_at, consecutive_failures,
           'idle' AS tier,
           coalesce(last_success_at + %(idle_interval_s)s * interval '1 second', '-infinity') AS due_at
    FROM tracked_wallets
    WHERE status = 'active'
      AND (last_requested_at IS NULL OR last_requested_at <= now() - %(active_window_s)s * interval '1 second')
      AND (last_success_at IS NULL OR last_success_at <= now() - %(idle_interval_s)s * interval '1 second')
), classified AS (
    SELECT c.*,
           CASE WHEN c.consecutive_failures > 0 AND c.last_failure_at IS NOT NULL THEN
               c.last_failure_at
               + least(%(backoff_cap_s)s::float8,
                       %(backoff_base_s)s::float8 * power(2::float8, least(c.consecutive_failures - 1, 60)))
                 * interval '1 second'
           END AS backoff_until,
           EXISTS (SELECT 1 FROM sync_operations o
                   WHERE o.id = c.last_operation_id AND o.status IN ('queued', 'running', 'retrying')
                     AND o.enqueued_at > now() - %(inflight_window_s)s * interval '1 second') AS in_flight
    FROM candidates c
), summary AS (
    SELECT count(*) FILTER (WHERE NOT in_flight AND (backoff_until IS NULL OR backoff_until <= now())) AS stale_count,
           count(*) FILTER (WHERE in_flight) AS in_flight_count,
           count(*) FILTER (WHERE NOT in_flight AND backoff_until > now()) AS backing_off_count
    FROM classified
)
SELECT s.stale_count, s.in_flight_count, s.backing_off_count,
       w.user_id, w.wallet_address, w.chain_ids, w.tier, nullif(w.due_at, '-infinity') AS due_at
FROM summary s
LEFT JOIN LATERAL (
    SELECT user_id, wallet_address, chain_ids, tier, greatest(due_at, backoff_until) AS due_at
    FROM classified
    WHERE NOT in_flight AND (backoff_until IS NULL OR backoff_until <= now())
    ORDER BY greatest(due_at, backoff_until), user_id, wallet_address
    LIMIT %(limit)s
) w ON true;

-- tracked_wallet_health --
-- Each tracked wallet's state for the dashboard, same rules as select_stale_wallets: 'paused',
-- 'in_flight' (its last operation is queued or running), 'backing_off' (failing; not requested
-- before backoff_until), 'stale' (due: requested by the next tick) or 'fresh'; next_due_at is when
-- the scheduler will next request it (null: never synced, so due since it was tracked).
-- Optionally one user's and/or one state's; soonest due first.
SELECT user_id, wallet_address, chain_ids, status, tier, state, added_at, last_requested_at, last_success_at,
       last_failure_at, consecutive_failures, backoff_until,
       nullif(greatest(due_at, backoff_until), '-infinity') AS next_due_at,
       last_operation_id::text
FROM (
    SELECT t.*, k.tier, d.due_at, b.backoff_until,
           CASE WHEN t.status = 'paused' THEN 'paused'
                WHEN f.in_flight THEN 'in_flight'
                WHEN b.backoff_until > now() THEN 'backing_off'
                WHEN d.due_at <= now() THEN 'stale'
                ELSE 'fresh'
           END AS state
    FROM tracked_wallets t
    CROSS JOIN LATERAL (SELECT CASE WHEN t.last_requested_at > now() - %(active_window_s)s * interval '1 second'
                                    THEN 'active' ELSE 'idle' END AS tier) k
    CROSS JOIN LATERAL (SELECT coalesce(t.last_success_at + CASE k.tier WHEN 'active' THEN %(active_interval_s)s
                                                                         ELSE %(idle_interval_s)s END
                                                          * interval '1 second', '-infinity') AS due_at) d
    CROSS JOIN LATERAL (SELECT CASE WHEN t.consecutive_failures > 0 AND t.last_failure_at IS NOT NULL THEN
                                   t.last_failure_at
                                   + least(%(backoff_cap_s)s::float8, %(backoff_base_s)s::float8
                                           * power(2::float8, least(t.consecutive_failures - 1, 60)))
                                     * interval '1 second'
                               END AS backoff_until) b
    CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM sync_operations o
                                       WHERE o.id = t.last_operation_id
                                         AND o.status IN ('queued', 'running', 'retrying')
                                         AND o.enqueued_at > now() - %(inflight_window_s)s * interval '1 second')
                               AS in_flight) f
    WHERE (%(user_id)s::text IS NULL OR t.user_id = %(user_id)s::text)
) h
WHERE %(state)s::text IS NULL OR state = %(state)s::text
ORDER BY greatest(due_at, backoff_until), user_id, wallet_address
LIMIT %(limit)s;

-- tracked_wallet_health_counts --
-- How many tracked wallets are in each state and tier (the rules of tracked_wallet_health).
SELECT state, tier, count(*)::int AS wallets, max(consecutive_failures) AS max_consecutive_failures
FROM (
    SELECT t.consecutive_failures, k.tier,
           CASE WHEN t.status = 'paused' THEN 'paused'
                WHEN EXISTS (SELECT 1 FROM sync_operations o
                             WHERE o.id = t.last_operation_id AND o.status IN ('queued', 'running', 'retrying')
                               AND o.enqueued_at > now() - %(inflight_window_s)s * interval '1 second') THEN 'in_flight'
                WHEN t.consecutive_failures > 0 AND t.last_failure_at IS NOT NULL
                     AND t.last_failure_at + least(%(backoff_cap_s)s::float8,
                             %(backoff_base_s)s::float8 * power(2::float8, least(t.consecutive_failures - 1, 60)))
                             * interval '1 second' > now() THEN 'backing_off'
                WHEN t.last_success_at IS NULL
                     OR t.last_success_at
                        + CASE k.tier WHEN 'active' THEN %(active_interval_s)s ELSE %(idle_interval_s)s END
                          * interval '1 second' <= now() THEN 'stale'
                ELSE 'fresh'
           END AS state
    FROM tracked_wallets t
    CROSS JOIN LATERAL (SELECT CASE WHEN t.last_requested_at > now() - %(active_window_s)s * interval '1 second'
                                    THEN 'active' ELSE 'idle' END AS tier) k
) h
GROUP BY state, tier
ORDER BY state, tier;

-- track_wallet --
-- Track a wallet (or change its chains); a paused wallet is resumed.  created: it was not tracked.
INSERT INTO tracked_wallets AS t (user_id, wallet_address, chain_ids)
VALUES (%(user_id)s, %(wallet_address)s, %(chain_ids)s::int[])
ON CONFLICT (user_id, wallet_address) DO UPDATE
SET chain_ids = excluded.chain_ids, status = 'active'
RETURNING user_id, wallet_address, chain_ids, status, added_at, (xmax = 0) AS created;

-- set_tracked_wallet_status --
-- Pause or resume a tracked wallet; no row if it is not tracked.
UPDATE tracked_wallets
SET status = %(status)s
WHERE user_id = %(user_id)s AND wallet_address = %(wallet_address)s
RETURNING user_id, wallet_address, chain_ids, status, added_at;

-- untrack_wallet --
-- Stop tracking a wallet (its holdings and audit trail stay); no row if it was not tracked.
DELETE FROM tracked_wallets
WHERE user_id = %(user_id)s AND wallet_address = %(wallet_address)s
RETURNING user_id, wallet_address;

-- claim_tick --
-- Start a tick of a schedule; no row if this tick was claimed already (a second delivery of the
-- same tick does nothing).
INSERT INTO scheduler_ticks (schedule, tick_at, scheduler_id, started_at, details)
VALUES (%(schedule)s, %(tick_at)s, %(scheduler_id)s, clock_timestamp(), %(details)s::jsonb)
ON CONFLICT (schedule, tick_at) DO NOTHING
RETURNING started_at;

-- finish_tick --
-- Record what a tick did and why.
UPDATE scheduler_ticks
SET finished_at = clock_timestamp(),
    stale_count = %(stale_count)s,
    requested_count = %(requested_count)s,
    held_back_count = %(held_back_count)s,
    backlog = %(backlog)s,
    details = details || %(details)s::jsonb
WHERE schedule = %(schedule)s AND tick_at = %(tick_at)s;

-- count_new_scheduled_operations --
-- Of the operation ids a tick's request_syncs returned, those it created (not a deduplicated
-- in-flight operation or a cooldown's last success).
SELECT count(*)::int AS created
FROM sync_operations
WHERE id = ANY(%(ids)s::uuid[]) AND trigger = 'scheduled' AND enqueued_at >= %(since)s;

-- recent_ticks --
-- The latest ticks, newest first, of one schedule or of all.
SELECT schedule, tick_at, scheduler_id, started_at, finished_at,
       (extract(epoch FROM finished_at - started_at) * 1000)::int AS duration_ms,
       stale_count, requested_count, held_back_count, backlog, details
FROM scheduler_ticks
WHERE %(schedule)s::text IS NULL OR schedule = %(schedule)s::text
ORDER BY tick_at DESC, schedule
LIMIT %(limit)s;

-- add_operation_partitions --
-- Create the weekly partitions of sync_operations still missing between now and %(ahead_days)s days ahead.
SELECT sync_operations_add_partitions(now(), now() + %(ahead_days)s * interval '1 day') AS created;

-- drop_old_operation_partitions --
-- Retention: detach and drop the partitions of sync_operations wholly older than the retention (those still
-- holding an unfinished operation are kept and named).
SELECT dropped, kept FROM sync_operations_drop_partitions(now() - %(days)s * interval '1 day');

-- compact_rollup_hour --
-- One compaction batch: the oldest hour still holding minute rows older than %(keep_minutes_h)s hours,
-- moved into hour rows (sync_rollup_compact_hour; no row when there is none).
SELECT m.hour, sync_rollup_compact_hour(m.hour) AS moved
FROM (SELECT date_trunc('hour', min(bucket)) AS hour
      FROM sync_rollup_minute
      WHERE bucket < date_trunc('hour', now() - %(keep_minutes_h)s * interval '1 hour')) AS m
WHERE m.hour IS NOT NULL;

-- compact_rollup_day --
-- One day batch: the next closed UTC day rolled up from its hour rows (sync_rollup_compact_day; no row
-- when no day is closed).
SELECT day, day_rows FROM sync_rollup_compact_day() WHERE day IS NOT NULL;

-- trim_rollup_counts --
-- The per-minute counts of compacted hours older than %(keep_counts_h)s hours, dropped.
SELECT sync_rollup_trim_counts(date_trunc('hour', now() - %(keep_counts_h)s * interval '1 hour')) AS dropped;

-- user_span_step --
-- One step of the users page's span of %(span_days)s days towards the last day closed by %(today)s, or
-- by PostgreSQL's clock when null: the clock writers decide by whether a day may be closed
-- (sync_rollup_user_span_step): the new watermark, null when the span was up to date.
SELECT sync_rollup_user_span_step(%(span_days)s, coalesce(%(today)s::timestamptz, now())) AS through_day;

-- user_span_watermarks --
-- The last day each span of the users page holds (null: never built).
SELECT span_days, CASE WHEN isfinite(through_day) THEN through_day END AS through_day
FROM sync_rollup_user_span_through
ORDER BY span_days;

-- delete_old_ticks --
-- One retention batch of scheduler_ticks.
WITH doomed AS (
    SELECT schedule, tick_at
    FROM scheduler_ticks
    WHERE tick_at < now() - %(days)s * interval '1 day'
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM scheduler_ticks AS s
USING doomed
WHERE s.schedule = doomed.schedule AND s.tick_at = doomed.tick_at;
