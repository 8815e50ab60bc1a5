-- portfolio-sync schema.  Idempotent: applied on every deploy by the Procfile's
-- `release` process (python -m storage.migrate) and by `./dev up`.
-- PostgreSQL holds data and the audit trail only; the job queue is Redis.

-- One row per accepted sync request, updated through its life:
--   queued -> running -> (retrying -> running)* -> succeeded | partial | failed
-- (partial: some chains were stored, the others still failed after the last attempt)
CREATE TABLE IF NOT EXISTS sync_operations (
    id               uuid        NOT NULL,
    user_id          text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    wallet_address   text        NOT NULL CHECK (wallet_address ~ '^0x[0-9a-f]{40}$'),
    chain_ids        int[]       NOT NULL CHECK (cardinality(chain_ids) > 0),
    priority         text        NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
    trigger          text        NOT NULL CHECK (length(trigger) BETWEEN 1 AND 32),
    provider         text        NOT NULL,
    status           text        NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'partial', 'failed')),
    attempts         int         NOT NULL DEFAULT 0,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,          -- start of the latest attempt
    finished_at      timestamptz,          -- set once, with the final status
    queue_wait_ms    int,                  -- enqueued_at -> start of the first attempt
    duration_ms      int,                  -- length of the latest attempt
    holdings_count   int,
    total_value_usd  numeric,
    unpriced_count   int,                  -- holdings without a known price (not counted in the total)
    chain_results    jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- chain id -> {status, holdings, value_usd, error_code, ...}
    error_code       text,
    error_message    text,
    worker_id        text,
    message_id       text,                 -- Redis id of the message that carries (or last carried) it
    requeues         int         NOT NULL DEFAULT 0, -- times the reconciler sent it again
    -- A partitioned table's unique keys include its partition key; the id alone is unique by
    -- construction (made by intake: UUIDv7, uuid4 before), and a lookup by id probes each partition's
    -- index on it unless it bounds enqueued_at by the time in the id (storage.operations).
    PRIMARY KEY (id, enqueued_at)
) PARTITION BY RANGE (enqueued_at);

-- Weekly partitions (Monday 00:00 UTC to the next Monday), named sync_operations_wYYYYMMDD after their
-- first day; housekeeping creates them ahead and retention drops whole ones (docs/capacity.md says why
-- weekly).  The bounds of each partition, read from the catalog.
CREATE OR REPLACE FUNCTION sync_operations_partition_bounds()
RETURNS TABLE (partition regclass, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE AS $f$
    SELECT c.oid::regclass,
           coalesce((regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz,
                    '-infinity'),
           coalesce((regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz,
                    'infinity')
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'sync_operations'::regclass
$f$;

-- Create the missing weekly partitions covering [since, until); returns how many it created.  A week
-- that overlaps an existing partition (the one a migrated table became) is left to it.
CREATE OR REPLACE FUNCTION sync_operations_add_partitions(since timestamptz, until timestamptz)
RETURNS int LANGUAGE plpgsql AS $f$
DECLARE
    week timestamptz := date_trunc('week', since, 'UTC');
    created int := 0;
BEGIN
    WHILE week < until LOOP
        IF NOT EXISTS (SELECT 1 FROM sync_operations_partition_bounds() b
                       WHERE b.lower_bound < week + interval '7 days' AND b.upper_bound > week) THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF sync_operations FOR VALUES FROM (%L) TO (%L)',
                           'sync_operations_w' || to_char(week AT TIME ZONE 'UTC', 'YYYYMMDD'),
                           week, week + interval '7 days');
            created := created + 1;
        END IF;
        week := week + interval '7 days';
    END LOOP;
    RETURN created;
END
$f$;

-- Retention: detach and drop every partition whose whole range is older than `cutoff`; a partition
-- still holding an unfinished operation is kept (the reconciler fails those long before) and named
-- in `kept`.  No row is deleted one by one: no DELETE, no dead tuples, no vacuum debt.
CREATE OR REPLACE FUNCTION sync_operations_drop_partitions(cutoff timestamptz)
RETURNS TABLE (dropped text[], kept text[]) LANGUAGE plpgsql AS $f$
DECLARE
    part record;
    busy boolean;
BEGIN
    dropped := '{}';
    kept := '{}';
    FOR part IN SELECT b.partition, b.upper_bound FROM sync_operations_partition_bounds() b
                WHERE b.upper_bound <= cutoff ORDER BY b.upper_bound LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE status IN (''queued'', ''running'', ''retrying''))',
                       part.partition) INTO busy;
        IF busy THEN
            kept := kept || part.partition::text;
        ELSE
            dropped := dropped || part.partition::text;
            EXECUTE format('ALTER TABLE sync_operations DETACH PARTITION %s', part.partition);
            EXECUTE format('DROP TABLE %s', part.partition);
        END IF;
    END LOOP;
    RETURN NEXT;
END
$f$;

-- Databases made before partitioning: the plain table becomes the first partition in place (renamed,
-- then attached under the partitioned table for every time up to the end of this week), so no row is
-- copied and none can be lost; it is dropped whole once its newest week is past the retention.  Its
-- own indexes are dropped first (their names are the partitioned table's now) and rebuilt below as the
-- partitions of those.
DO $$
DECLARE
    bound timestamptz;
BEGIN
    IF to_regclass('sync_operations_legacy') IS NULL
       AND (SELECT relkind FROM pg_class WHERE oid = to_regclass('sync_operations')) = 'r' THEN
        ALTER TABLE sync_operations ADD COLUMN IF NOT EXISTS requeues int NOT NULL DEFAULT 0;
        IF EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'sync_operations'::regclass AND conname = 'sync_operations_status_check'
                     AND pg_get_constraintdef(oid) NOT LIKE '%partial%') THEN
            ALTER TABLE sync_operations DROP CONSTRAINT sync_operations_status_check;
            ALTER TABLE sync_operations ADD CONSTRAINT sync_operations_status_check
                CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'partial', 'failed'));
        END IF;
        ALTER TABLE sync_operations RENAME TO sync_operations_legacy;
        -- Its key on the id alone gives way to the partitioned table's (id, enqueued_at), built on attaching.
        ALTER TABLE sync_operations_legacy DROP CONSTRAINT sync_operations_pkey;
        DROP INDEX IF EXISTS sync_operations_enqueued_at_idx, sync_operations_user_cover_idx, sync_operations_user_idx,
                             sync_operations_wallet_idx, sync_operations_status_idx, sync_operations_window_idx,
                             sync_operations_active_idx;
        CREATE TABLE sync_operations (LIKE sync_operations_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
                                      PRIMARY KEY (id, enqueued_at))
            PARTITION BY RANGE (enqueued_at);
        SELECT date_trunc('week', greatest(max(enqueued_at), now()), 'UTC') + interval '7 days'
        INTO bound FROM sync_operations_legacy;
        EXECUTE format('ALTER TABLE sync_operations ATTACH PARTITION sync_operations_legacy '
                       'FOR VALUES FROM (MINVALUE) TO (%L)', bound);
    END IF;
END $$;


-- The dashboard reads by time range, per user, per wallet and per status.
CREATE INDEX IF NOT EXISTS sync_operations_enqueued_at_idx ON sync_operations USING brin (enqueued_at);
-- Per user: covering, so a user's statistics over a window are read from the index alone
-- (it replaced sync_operations_user_idx, the same key without the INCLUDE columns).
CREATE INDEX IF NOT EXISTS sync_operations_user_cover_idx ON sync_operations (user_id, enqueued_at DESC)
    INCLUDE (status, duration_ms);
DROP INDEX IF EXISTS sync_operations_user_idx;
CREATE INDEX IF NOT EXISTS sync_operations_wallet_idx ON sync_operations (wallet_address, enqueued_at DESC);
CREATE INDEX IF NOT EXISTS sync_operations_status_idx ON sync_operations (status, enqueued_at DESC);
-- The dashboard's aggregates over a time window read this index alone (index-only scans, see
-- storage/dashboard.sql): a month of the trail is a narrow 130 bytes a row here instead of the
-- wide rows, and the newest operations come first without a sort.
CREATE INDEX IF NOT EXISTS sync_operations_window_idx ON sync_operations (enqueued_at)
    INCLUDE (status, trigger, priority, duration_ms, queue_wait_ms, error_code, user_id, wallet_address);
-- The operations page's search for a text in the errors of failed operations: the trigrams (pg_trgm, a
-- contrib module managed PostgreSQL services offer) of their error code and message, so a rare text over a
-- month of failures reads its matches, not every failure with its wide row (5 s, the dashboard's timeout,
-- at 10M operations).  Partial: only the failed and retrying rows, a small share of the writes.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS sync_operations_error_text_idx ON sync_operations
    USING gin (error_code gin_trgm_ops, error_message gin_trgm_ops) WHERE status IN ('failed', 'retrying');
-- Operations not yet final: small, and what a reconciler scans.
CREATE INDEX IF NOT EXISTS sync_operations_active_idx ON sync_operations (enqueued_at)
    WHERE status IN ('queued', 'running', 'retrying');

-- This week's and the next two weeks' partitions (housekeeping keeps creating them ahead).
SELECT sync_operations_add_partitions(now(), now() + interval '21 days');

-- Rollups of the audit trail: what every dashboard aggregate reads instead of raw rows, so its cost is
-- the window's length in minutes, not in operations.  An operation is counted once, when it becomes
-- final, by the trigger below, in the same transaction as its final status: every path to a final
-- status (finish_attempts, fail_operation, the reconciler's fail_stuck_operation, any later one) is
-- covered without repeating the bookkeeping in each, a redelivery or a second reconciler pass finds
-- the row final already (each of those statements updates only rows not final) so counts nothing,
-- and a worker killed mid-write rolls the count back with the status.  Rows are keyed by the minute of
-- enqueued_at (the dashboard's windows are on enqueued_at) and a slot (the writing backend's pid mod 4)
-- so concurrent workers finishing in one minute seldom wait on one rollup row; readers sum the slots.
-- Latency histograms: bin 0 holds 0 ms, bin i (1..88) holds [2^((i-1)/4), 2^(i/4)) ms, bin 89 the rest:
-- four bins a doubling, so a percentile read off them is within 19% (docs/capacity.md).
CREATE OR REPLACE FUNCTION sync_latency_bin(ms int) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$
    SELECT CASE WHEN ms IS NULL THEN NULL WHEN ms < 1 THEN 0
                ELSE least(89, 1 + floor(4 * ln(ms::float8) / ln(2::float8))::int) END
$f$;
-- The upper edge (ms) of a bin: what a percentile read off the histogram reports.
CREATE OR REPLACE FUNCTION sync_latency_bin_upper(bin int) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$
    SELECT CASE WHEN bin = 0 THEN 1 ELSE power(2::float8, bin / 4.0) END
$f$;

CREATE TABLE IF NOT EXISTS sync_rollup_minute (
    bucket          timestamptz NOT NULL,   -- minute of enqueued_at
    status          text        NOT NULL,   -- final: succeeded, partial, failed
    trigger         text        NOT NULL,
    priority        text        NOT NULL,
    provider        text        NOT NULL,
    error_code      text        NOT NULL,   -- '' when none
    slot            smallint    NOT NULL,
    syncs           bigint      NOT NULL,
    attempts        bigint      NOT NULL,
    requeues        bigint      NOT NULL,
    duration_hist   int[]       NOT NULL,   -- of duration_ms (the last attempt), 90 bins
    queue_wait_hist int[]       NOT NULL,   -- of queue_wait_ms, 90 bins
    PRIMARY KEY (bucket, status, trigger, priority, provider, error_code, slot)
);
-- Per chain read (chain_results of the final operation): status ok / error, its error code, latency.
CREATE TABLE IF NOT EXISTS sync_rollup_chain_minute (
    bucket          timestamptz NOT NULL,
    chain_id        int         NOT NULL,
    status          text        NOT NULL,
    error_code      text        NOT NULL,
    slot            smallint    NOT NULL,
    reads           bigint      NOT NULL,
    duration_hist   int[]       NOT NULL,
    PRIMARY KEY (bucket, chain_id, status, error_code, slot)
);
-- Per user and day (UTC) of enqueued_at: the users page's statistics.
CREATE TABLE IF NOT EXISTS sync_rollup_user_day (
    user_id         text        NOT NULL,
    day             timestamptz NOT NULL,
    syncs           bigint      NOT NULL,
    succeeded       bigint      NOT NULL,
    partial         bigint      NOT NULL,
    failed          bigint      NOT NULL,
    duration_ms_sum bigint      NOT NULL,
    duration_count  bigint      NOT NULL,
    last_enqueued_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX IF NOT EXISTS sync_rollup_user_day_day_idx ON sync_rollup_user_day (day);
-- The two distinct counts of the overview, which no sum over buckets can give: per (user, wallet) the
-- enqueue time of its latest successful operation, and per (error code, user) that of its latest failed
-- one.  A pair whose latest lies inside a window [lo, hi) had one there, one whose latest is before lo
-- had none, and only those whose latest is at or after hi need a look at raw rows; the dashboard's
-- windows end now, so those are the few that finished since (storage/dashboard.sql).  Created with a
-- backfill from the operations already final, once, when the table is made (a database of an earlier
-- release); the trigger keeps them from then on.  The release's transaction installs the function that
-- keeps them too, invisible to workers until it commits: so the backfill first takes a lock on
-- sync_operations that waits for the writers in flight and holds the next ones until the commit, when
-- they run the new function; none finishes unseen between the backfill's snapshot and the commit.
DO $$
BEGIN
    IF to_regclass('sync_rollup_wallet_latest') IS NULL OR to_regclass('sync_rollup_failure_latest') IS NULL THEN
        LOCK TABLE sync_operations IN SHARE ROW EXCLUSIVE MODE;
    END IF;
    IF to_regclass('sync_rollup_wallet_latest') IS NULL THEN
        CREATE TABLE sync_rollup_wallet_latest (
            user_id          text        NOT NULL,
            wallet_address   text        NOT NULL,
            last_enqueued_at timestamptz NOT NULL,
            PRIMARY KEY (user_id, wallet_address)
        );
        CREATE INDEX sync_rollup_wallet_latest_at_idx ON sync_rollup_wallet_latest (last_enqueued_at) INCLUDE (user_id);
        INSERT INTO sync_rollup_wallet_latest (user_id, wallet_address, last_enqueued_at)
        SELECT user_id, wallet_address, max(enqueued_at) FROM sync_operations WHERE status = 'succeeded'
        GROUP BY 1, 2;
    END IF;
    IF to_regclass('sync_rollup_failure_latest') IS NULL THEN
        CREATE TABLE sync_rollup_failure_latest (
            error_code       text        NOT NULL,   -- '' when none
            user_id          text        NOT NULL,
            last_enqueued_at timestamptz NOT NULL,
            PRIMARY KEY (error_code, user_id)
        );
        CREATE INDEX sync_rollup_failure_latest_at_idx ON sync_rollup_failure_latest (last_enqueued_at)
            INCLUDE (error_code, user_id);
        INSERT INTO sync_rollup_failure_latest (error_code, user_id, last_enqueued_at)
        SELECT coalesce(error_code, ''), user_id, max(enqueued_at) FROM sync_operations WHERE status = 'failed'
        GROUP BY 1, 2;
    END IF;
END $$;
-- Updated at every final operation of a pair and read whole by a long window: vacuumed early, so they
-- stay near their live size.
ALTER TABLE sync_rollup_wallet_latest SET (autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE sync_rollup_failure_latest SET (autovacuum_vacuum_scale_factor = 0.02);

-- The users page's grain (docs/capacity.md): per user and span of N closed UTC days, the sums of
-- sync_rollup_user_day over every day from the span's first on, (through_day - span_days, +infinity): the
-- span's N days and everything after them, so a page window of N closed days and today is one row per user
-- here, whatever the history or the volume.  sync_rollup_add adds every final operation of those days to
-- it as it adds it to user_day; housekeeping moves each span one day at a time after each UTC midnight
-- (sync_rollup_user_span_step), taking off the day that left.  Invariant: a user's row = the sum of that
-- user's user_day rows from the span's first day on (no row when that sum is empty).
-- (It replaced sync_rollup_user_span, which held the span's closed days only and made every read join
-- today's user_day rows to it: at 100,000 active users that join was most of the page's time.)
-- A database of that layout has its spans built again, whole, below (watermarks back to never built).
DO $$
BEGIN
    IF to_regclass('sync_rollup_user_span') IS NOT NULL THEN
        UPDATE sync_rollup_user_span_through SET through_day = '-infinity';
        DROP TABLE sync_rollup_user_span;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS sync_rollup_user_since (
    user_id          text        NOT NULL,
    span_days        int         NOT NULL CHECK (span_days IN (1, 7, 30)),
    syncs            bigint      NOT NULL,
    succeeded        bigint      NOT NULL,
    partial          bigint      NOT NULL,
    failed           bigint      NOT NULL,
    duration_ms_sum  bigint      NOT NULL,
    duration_count   bigint      NOT NULL,
    last_enqueued_at timestamptz NOT NULL,
    PRIMARY KEY (span_days, user_id)
);
-- Updated by every finishing batch of a user's operations: vacuumed early, so it stays near its live size.
ALTER TABLE sync_rollup_user_since SET (autovacuum_vacuum_scale_factor = 0.02);
-- The watermark of each span: the last closed day it has moved to ('-infinity' until first built).  Its
-- row is locked FOR UPDATE by a housekeeping step and FOR SHARE by a writer adding an operation of a day
-- before today, so the two never interleave: a day leaves a span either before a late operation of it
-- (which then leaves it out) or after it (and takes it off with the day's user_day rows), never both or
-- neither.  An operation of today needs no lock: no step takes today off a span.
CREATE TABLE IF NOT EXISTS sync_rollup_user_span_through (
    span_days   int         PRIMARY KEY CHECK (span_days IN (1, 7, 30)),
    through_day timestamptz NOT NULL
);
INSERT INTO sync_rollup_user_span_through (span_days, through_day)
VALUES (1, '-infinity'), (7, '-infinity'), (30, '-infinity')
ON CONFLICT DO NOTHING;

-- Histograms as int[90] (index = bin + 1): built by sync_hist(bin), added by sync_hist_add / sync_hist_sum.
CREATE OR REPLACE FUNCTION sync_hist_step(state int[], bin int) RETURNS int[] LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN
    IF state IS NULL THEN
        state := array_fill(0, ARRAY[90]);
    END IF;
    IF bin IS NOT NULL THEN
        state[bin + 1] := state[bin + 1] + 1;
    END IF;
    RETURN state;
END
$f$;
-- plpgsql adding in place (an expanded array): three times faster than unnest and array_agg in SQL,
-- which is what every rollup read and every rollup upsert pays per row.
CREATE OR REPLACE FUNCTION sync_hist_add(a int[], b int[]) RETURNS int[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $f$
BEGIN
    IF a IS NULL THEN
        RETURN b;
    END IF;
    IF b IS NULL THEN
        RETURN a;
    END IF;
    FOR i IN 1 .. 90 LOOP
        a[i] := a[i] + b[i];
    END LOOP;
    RETURN a;
END
$f$;
CREATE OR REPLACE AGGREGATE sync_hist(int) (SFUNC = sync_hist_step, STYPE = int[],
                                            INITCOND = '{0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0}');
CREATE OR REPLACE AGGREGATE sync_hist_sum(int[]) (SFUNC = sync_hist_add, STYPE = int[]);
-- The value (ms, a bin's upper edge) at quantile q of a histogram; null when it is empty.
CREATE OR REPLACE FUNCTION sync_hist_quantile(hist int[], q float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS $f$
    SELECT sync_latency_bin_upper((min(i) - 1)::int)
    FROM (SELECT i, sum(n) OVER (ORDER BY i) AS below, sum(n) OVER () AS total
          FROM unnest(hist) WITH ORDINALITY AS u(n, i)) AS c
    WHERE total > 0 AND below >= q * total
$f$;

-- Count a set of final operations (rows of sync_operations) into the rollups.  plpgsql, not sql: a
-- plpgsql function keeps its statements' plans for the session, a multi-statement sql one is planned
-- again at every call, and this runs once per finishing batch on the workers' write path.  Generic
-- plans: PostgreSQL's choice, a custom plan for each batch's array, planned two of the statements again
-- at every call, half of the function's time.
CREATE OR REPLACE FUNCTION sync_rollup_add(ops sync_operations[]) RETURNS void LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $f$
DECLARE
    -- Operations of a day before today (PostgreSQL's clock) may race a housekeeping step taking that day
    -- off a span: they are added under the watermarks' share lock.  A step only ever takes off a day at
    -- least a span before the last closed one, so today's operations, almost every batch, skip it.
    late boolean := EXISTS (SELECT 1 FROM unnest(ops) AS o
                            WHERE o.enqueued_at < date_trunc('day', clock_timestamp(), 'UTC'));
BEGIN
    IF late THEN
        -- First: a batch waiting here for a housekeeping step holds no rollup row other writers need.
        PERFORM 1 FROM sync_rollup_user_span_through ORDER BY span_days FOR SHARE;
    END IF;
    INSERT INTO sync_rollup_minute AS r (bucket, status, trigger, priority, provider, error_code, slot, syncs,
                                         attempts, requeues, duration_hist, queue_wait_hist)
    SELECT date_trunc('minute', o.enqueued_at), o.status, o.trigger, o.priority, o.provider,
           coalesce(o.error_code, ''), pg_backend_pid() % 4, count(*), sum(o.attempts), sum(o.requeues),
           sync_hist(sync_latency_bin(o.duration_ms)), sync_hist(sync_latency_bin(o.queue_wait_ms))
    FROM unnest(ops) AS o
    GROUP BY 1, 2, 3, 4, 5, 6, 7
    ORDER BY 1, 2, 3, 4, 5, 6, 7  -- every writer locks rollup rows in one order: no deadlock between two
    ON CONFLICT (bucket, status, trigger, priority, provider, error_code, slot) DO UPDATE
    SET syncs = r.syncs + excluded.syncs, attempts = r.attempts + excluded.attempts,
        requeues = r.requeues + excluded.requeues,
        duration_hist = sync_hist_add(r.duration_hist, excluded.duration_hist),
        queue_wait_hist = sync_hist_add(r.queue_wait_hist, excluded.queue_wait_hist);

    INSERT INTO sync_rollup_chain_minute AS r (bucket, chain_id, status, error_code, slot, reads, duration_hist)
    SELECT date_trunc('minute', o.enqueued_at), cr.key::int, coalesce(cr.value ->> 'status', 'unknown'),
           coalesce(cr.value ->> 'error_code', ''), pg_backend_pid() % 4, count(*),
           sync_hist(sync_latency_bin((cr.value ->> 'duration_ms')::int))
    FROM unnest(ops) AS o
    CROSS JOIN LATERAL jsonb_each(o.chain_results) AS cr
    WHERE cr.key ~ '^[0-9]+$'
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (bucket, chain_id, status, error_code, slot) DO UPDATE
    SET reads = r.reads + excluded.reads, duration_hist = sync_hist_add(r.duration_hist, excluded.duration_hist);

    -- Per user and day, into user_day and into every span holding the day (all spans, for today's).
    WITH per_day AS (
        SELECT o.user_id, date_trunc('day', o.enqueued_at, 'UTC') AS day, count(*) AS syncs,
               count(*) FILTER (WHERE o.status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE o.status = 'partial') AS partial,
               count(*) FILTER (WHERE o.status = 'failed') AS failed,
               coalesce(sum(o.duration_ms), 0) AS duration_ms_sum, count(o.duration_ms) AS duration_count,
               max(o.enqueued_at) AS last_enqueued_at
        FROM unnest(ops) AS o
        GROUP BY 1, 2
    ), days AS (
        INSERT INTO sync_rollup_user_day AS r (user_id, day, syncs, succeeded, partial, failed, duration_ms_sum,
                                               duration_count, last_enqueued_at)
        SELECT * FROM per_day
        ORDER BY 1, 2
        ON CONFLICT (user_id, day) DO UPDATE
        SET syncs = r.syncs + excluded.syncs, succeeded = r.succeeded + excluded.succeeded,
            partial = r.partial + excluded.partial, failed = r.failed + excluded.failed,
            duration_ms_sum = r.duration_ms_sum + excluded.duration_ms_sum,
            duration_count = r.duration_count + excluded.duration_count,
            last_enqueued_at = greatest(r.last_enqueued_at, excluded.last_enqueued_at)
    )
    INSERT INTO sync_rollup_user_since AS r (user_id, span_days, syncs, succeeded, partial, failed,
                                             duration_ms_sum, duration_count, last_enqueued_at)
    SELECT d.user_id, t.span_days, sum(d.syncs), sum(d.succeeded), sum(d.partial), sum(d.failed),
           sum(d.duration_ms_sum), sum(d.duration_count), max(d.last_enqueued_at)
    FROM per_day AS d
    JOIN sync_rollup_user_span_through AS t ON d.day > t.through_day - t.span_days * interval '1 day'
    GROUP BY 1, 2
    ORDER BY 2, 1
    ON CONFLICT (span_days, user_id) DO UPDATE
    SET syncs = r.syncs + excluded.syncs, succeeded = r.succeeded + excluded.succeeded,
        partial = r.partial + excluded.partial, failed = r.failed + excluded.failed,
        duration_ms_sum = r.duration_ms_sum + excluded.duration_ms_sum,
        duration_count = r.duration_count + excluded.duration_count,
        last_enqueued_at = greatest(r.last_enqueued_at, excluded.last_enqueued_at);

    INSERT INTO sync_rollup_wallet_latest AS r (user_id, wallet_address, last_enqueued_at)
    SELECT o.user_id, o.wallet_address, max(o.enqueued_at)
    FROM unnest(ops) AS o
    WHERE o.status = 'succeeded'
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (user_id, wallet_address) DO UPDATE SET last_enqueued_at = excluded.last_enqueued_at
    WHERE r.last_enqueued_at < excluded.last_enqueued_at;

    INSERT INTO sync_rollup_failure_latest AS r (error_code, user_id, last_enqueued_at)
    SELECT coalesce(o.error_code, ''), o.user_id, max(o.enqueued_at)
    FROM unnest(ops) AS o
    WHERE o.status = 'failed'
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (error_code, user_id) DO UPDATE SET last_enqueued_at = excluded.last_enqueued_at
    WHERE r.last_enqueued_at < excluded.last_enqueued_at;
END
$f$;

-- One housekeeping step of a span: the next day after its watermark, if that day is closed by `today`
-- (one UTC day after it ends), becomes the watermark and the day leaving the span is taken off, one
-- user_day slice (~users rows), in one transaction: a day leaves exactly once, and a second call finds
-- nothing to do.  A span missing more days than it holds (never built, or housekeeping stopped for
-- longer) or ahead of `today` is rebuilt whole from user_day instead, holding the writers off the table
-- meanwhile (today's writers take no watermark lock, and an increment landing between the rebuild's read
-- and its write would be lost).  Returns the new watermark, null when the span was up to date.  A user
-- whose last day left the span has its row deleted: its last_enqueued_at cannot be taken back, but it
-- then lies in the day that left only when no later day holds one of the user's operations.
CREATE OR REPLACE FUNCTION sync_rollup_user_span_step(span int, today timestamptz) RETURNS timestamptz
LANGUAGE plpgsql AS $f$
DECLARE
    target timestamptz := date_trunc('day', today, 'UTC') - interval '1 day';  -- the last closed day
    through timestamptz;
BEGIN
    SELECT t.through_day INTO STRICT through FROM sync_rollup_user_span_through AS t
    WHERE t.span_days = span FOR UPDATE;
    IF through = target THEN
        RETURN NULL;
    END IF;
    IF through > target OR through < target - span * interval '1 day' THEN
        LOCK TABLE sync_rollup_user_since IN SHARE ROW EXCLUSIVE MODE;
        DELETE FROM sync_rollup_user_since WHERE span_days = span;
        INSERT INTO sync_rollup_user_since (user_id, span_days, syncs, succeeded, partial, failed, duration_ms_sum,
                                            duration_count, last_enqueued_at)
        SELECT d.user_id, span, sum(d.syncs), sum(d.succeeded), sum(d.partial), sum(d.failed),
               sum(d.duration_ms_sum), sum(d.duration_count), max(d.last_enqueued_at)
        FROM sync_rollup_user_day AS d
        WHERE d.day > target - span * interval '1 day'
        GROUP BY d.user_id
        ORDER BY d.user_id;
        through := target;
    ELSE
        through := through + interval '1 day';
        -- Rows in the writers' order (span, user): a step and a writer never wait for each other in a circle.
        INSERT INTO sync_rollup_user_since AS r (user_id, span_days, syncs, succeeded, partial, failed,
                                                 duration_ms_sum, duration_count, last_enqueued_at)
        SELECT d.user_id, span, -d.syncs, -d.succeeded, -d.partial, -d.failed, -d.duration_ms_sum,
               -d.duration_count, '-infinity'
        FROM sync_rollup_user_day AS d
        WHERE d.day = through - span * interval '1 day'
        ORDER BY d.user_id
        ON CONFLICT (span_days, user_id) DO UPDATE
        SET syncs = r.syncs + excluded.syncs, succeeded = r.succeeded + excluded.succeeded,
            partial = r.partial + excluded.partial, failed = r.failed + excluded.failed,
            duration_ms_sum = r.duration_ms_sum + excluded.duration_ms_sum,
            duration_count = r.duration_count + excluded.duration_count;
        DELETE FROM sync_rollup_user_since AS r
        USING (SELECT e.user_id FROM sync_rollup_user_since AS e WHERE e.span_days = span AND e.syncs = 0
               ORDER BY e.user_id FOR UPDATE) AS empty
        WHERE r.span_days = span AND r.user_id = empty.user_id AND r.syncs = 0;
    END IF;
    UPDATE sync_rollup_user_span_through SET through_day = through WHERE span_days = span;
    RETURN through;
END
$f$;

-- Compaction (housekeeping, sync_rollup_compact_hour): minute rows older than two hours are rolled into
-- hour rows of the same shape (slot 0), one hour per transaction: the minute rows are deleted and
-- their sums added to the hour rows by one statement, so an hour is moved exactly once (a second run
-- finds no minute row left) and a reader sees it either as minutes or as an hour, never both.
-- sync_rollup_compacted.until is the end of the compacted hours: a window's part hours at its edges
-- before it are read from raw rows (their minutes are gone).  A late operation of a compacted hour (the
-- reconciler failing an old one) writes a minute row there; readers count it, the next run folds it in.
-- The same statement keeps the hour's counts per minute and status (sync_rollup_minute_counts, narrow,
-- for the short ranges' sub-hour bars; housekeeping drops them after a day, counts_from is where they
-- start) and, when the hour's day is already rolled up (below), adds the sums to that day's rows too.
CREATE TABLE IF NOT EXISTS sync_rollup_hour (LIKE sync_rollup_minute INCLUDING ALL);
CREATE TABLE IF NOT EXISTS sync_rollup_chain_hour (LIKE sync_rollup_chain_minute INCLUDING ALL);
-- Days (UTC): built from a closed day's hour rows by housekeeping (sync_rollup_compact_day), the hours
-- kept, so a long window reads its whole days here and the hour rows of its part days at the edges.
CREATE TABLE IF NOT EXISTS sync_rollup_day (LIKE sync_rollup_minute INCLUDING ALL);
CREATE TABLE IF NOT EXISTS sync_rollup_chain_day (LIKE sync_rollup_chain_minute INCLUDING ALL);
CREATE TABLE IF NOT EXISTS sync_rollup_minute_counts (
    bucket  timestamptz NOT NULL,   -- minute of enqueued_at
    status  text        NOT NULL,
    syncs   bigint      NOT NULL,
    PRIMARY KEY (bucket, status)
);
CREATE TABLE IF NOT EXISTS sync_rollup_compacted (
    one   boolean     PRIMARY KEY DEFAULT true CHECK (one),
    until timestamptz NOT NULL
);
INSERT INTO sync_rollup_compacted (until) VALUES ('-infinity') ON CONFLICT DO NOTHING;
-- days_until: the end of the days rolled up (every day before it has its day rows); counts_from: where
-- the per-minute counts of compacted hours start (the hours compacted before they existed have none).
ALTER TABLE sync_rollup_compacted ADD COLUMN IF NOT EXISTS days_until timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE sync_rollup_compacted ADD COLUMN IF NOT EXISTS counts_from timestamptz;
UPDATE sync_rollup_compacted SET counts_from = until WHERE counts_from IS NULL;
ALTER TABLE sync_rollup_compacted ALTER COLUMN counts_from SET DEFAULT '-infinity', ALTER COLUMN counts_from SET NOT NULL;

-- Move one hour's minute rows into hour rows; how many minute rows were moved.  The row of
-- sync_rollup_compacted is locked first: compactions of hours and of days run one at a time.
CREATE OR REPLACE FUNCTION sync_rollup_compact_hour(hour timestamptz) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    done sync_rollup_compacted;
    moved bigint;
BEGIN
    SELECT * INTO done FROM sync_rollup_compacted FOR UPDATE;
    WITH gone AS (
        DELETE FROM sync_rollup_minute WHERE bucket >= hour AND bucket < hour + interval '1 hour' RETURNING *
    ), sums AS (
        SELECT status, trigger, priority, provider, error_code, sum(syncs) AS syncs, sum(attempts) AS attempts,
               sum(requeues) AS requeues, sync_hist_sum(duration_hist) AS duration_hist,
               sync_hist_sum(queue_wait_hist) AS queue_wait_hist
        FROM gone
        GROUP BY 1, 2, 3, 4, 5
    ), hours AS (
        INSERT INTO sync_rollup_hour AS r (bucket, status, trigger, priority, provider, error_code, slot, syncs,
                                           attempts, requeues, duration_hist, queue_wait_hist)
        SELECT hour, status, trigger, priority, provider, error_code, 0, syncs, attempts, requeues, duration_hist,
               queue_wait_hist
        FROM sums
        ORDER BY 2, 3, 4, 5, 6
        ON CONFLICT (bucket, status, trigger, priority, provider, error_code, slot) DO UPDATE
        SET syncs = r.syncs + excluded.syncs, attempts = r.attempts + excluded.attempts,
            requeues = r.requeues + excluded.requeues,
            duration_hist = sync_hist_add(r.duration_hist, excluded.duration_hist),
            queue_wait_hist = sync_hist_add(r.queue_wait_hist, excluded.queue_wait_hist)
    ), days AS (
        INSERT INTO sync_rollup_day AS r (bucket, status, trigger, priority, provider, error_code, slot, syncs,
                                          attempts, requeues, duration_hist, queue_wait_hist)
        SELECT date_trunc('day', hour, 'UTC'), status, trigger, priority, provider, error_code, 0, syncs, attempts,
               requeues, duration_hist, queue_wait_hist
        FROM sums
        WHERE hour < done.days_until
        ORDER BY 2, 3, 4, 5, 6
        ON CONFLICT (bucket, status, trigger, priority, provider, error_code, slot) DO UPDATE
        SET syncs = r.syncs + excluded.syncs, attempts = r.attempts + excluded.attempts,
            requeues = r.requeues + excluded.requeues,
            duration_hist = sync_hist_add(r.duration_hist, excluded.duration_hist),
            queue_wait_hist = sync_hist_add(r.queue_wait_hist, excluded.queue_wait_hist)
    ), counts AS (
        INSERT INTO sync_rollup_minute_counts AS r (bucket, status, syncs)
        SELECT bucket, status, sum(syncs)
        FROM gone
        WHERE hour >= done.counts_from
        GROUP BY 1, 2
        ORDER BY 1, 2
        ON CONFLICT (bucket, status) DO UPDATE SET syncs = r.syncs + excluded.syncs
    )
    SELECT count(*) INTO moved FROM gone;

    WITH gone AS (
        DELETE FROM sync_rollup_chain_minute WHERE bucket >= hour AND bucket < hour + interval '1 hour' RETURNING *
    ), sums AS (
        SELECT chain_id, status, error_code, sum(reads) AS reads, sync_hist_sum(duration_hist) AS duration_hist
        FROM gone
        GROUP BY 1, 2, 3
    ), hours AS (
        INSERT INTO sync_rollup_chain_hour AS r (bucket, chain_id, status, error_code, slot, reads, duration_hist)
        SELECT hour, chain_id, status, error_code, 0, reads, duration_hist
        FROM sums
        ORDER BY 2, 3, 4
        ON CONFLICT (bucket, chain_id, status, error_code, slot) DO UPDATE
        SET reads = r.reads + excluded.reads, duration_hist = sync_hist_add(r.duration_hist, excluded.duration_hist)
    ), days AS (
        INSERT INTO sync_rollup_chain_day AS r (bucket, chain_id, status, error_code, slot, reads, duration_hist)
        SELECT date_trunc('day', hour, 'UTC'), chain_id, status, error_code, 0, reads, duration_hist
        FROM sums
        WHERE hour < done.days_until
        ORDER BY 2, 3, 4
        ON CONFLICT (bucket, chain_id, status, error_code, slot) DO UPDATE
        SET reads = r.reads + excluded.reads, duration_hist = sync_hist_add(r.duration_hist, excluded.duration_hist)
    )
    SELECT moved + count(*) INTO moved FROM gone;

    UPDATE sync_rollup_compacted SET until = greatest(until, hour + interval '1 hour');
    RETURN moved;
END
$f$;

-- Roll the next closed day (UTC) up from its hour rows: the first day not rolled up yet, once all its hours
-- are compacted; `day` is null when there is none.  Days are rolled up in order, each once (days_until
-- moves past it in the same transaction); a late hour of a rolled-up day adds to it (above).
CREATE OR REPLACE FUNCTION sync_rollup_compact_day(OUT day timestamptz, OUT day_rows bigint) LANGUAGE plpgsql AS $f$
DECLARE
    done sync_rollup_compacted;
BEGIN
    SELECT * INTO done FROM sync_rollup_compacted FOR UPDATE;
    day := CASE WHEN done.days_until > '-infinity' THEN done.days_until
                ELSE (SELECT date_trunc('day', min(bucket), 'UTC') FROM sync_rollup_hour) END;
    IF day IS NULL OR day + interval '24 hours' > done.until THEN
        day := NULL;
        RETURN;
    END IF;
    INSERT INTO sync_rollup_day (bucket, status, trigger, priority, provider, error_code, slot, syncs, attempts,
                                 requeues, duration_hist, queue_wait_hist)
    SELECT day, status, trigger, priority, provider, error_code, 0, sum(syncs), sum(attempts), sum(requeues),
           sync_hist_sum(duration_hist), sync_hist_sum(queue_wait_hist)
    FROM sync_rollup_hour
    WHERE bucket >= day AND bucket < day + interval '24 hours'
    GROUP BY 2, 3, 4, 5, 6;
    GET DIAGNOSTICS day_rows = ROW_COUNT;
    INSERT INTO sync_rollup_chain_day (bucket, chain_id, status, error_code, slot, reads, duration_hist)
    SELECT day, chain_id, status, error_code, 0, sum(reads), sync_hist_sum(duration_hist)
    FROM sync_rollup_chain_hour
    WHERE bucket >= day AND bucket < day + interval '24 hours'
    GROUP BY 2, 3, 4;
    UPDATE sync_rollup_compacted SET days_until = day + interval '24 hours';
END
$f$;

-- Drop the per-minute counts of the hours before `before` (an hour's start); how many rows.
CREATE OR REPLACE FUNCTION sync_rollup_trim_counts(before timestamptz) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    dropped bigint;
BEGIN
    UPDATE sync_rollup_compacted SET counts_from = greatest(counts_from, before);
    DELETE FROM sync_rollup_minute_counts WHERE bucket < before;
    GET DIAGNOSTICS dropped = ROW_COUNT;
    RETURN dropped;
END
$f$;

-- Where a window [lo, hi) reads what: raw rows in [lo, x) and [y, hi), rollup rows in [x, y): minute rows
-- in all of it; day rows in [dx, dy), its whole rolled-up days, and hour rows in the rest; or, for
-- counts alone, per-minute counts in [cf, y) and hour rows in [x, cf).  An edge's part hour is read raw
-- when that hour is compacted (its minutes are gone), otherwise only its part minute is; so at most
-- two hours of raw rows for windows reaching back past the compaction, two minutes for the others.
DROP FUNCTION IF EXISTS sync_rollup_split(timestamptz, timestamptz);
CREATE OR REPLACE FUNCTION sync_rollup_bounds(lo timestamptz, hi timestamptz, OUT x timestamptz, OUT y timestamptz,
                                              OUT dx timestamptz, OUT dy timestamptz, OUT cf timestamptz)
LANGUAGE sql STABLE AS $f$
    SELECT b.x, b.y, b.dx, greatest(b.dx, least(b.y, date_trunc('day', hi, 'UTC'), b.days_until)),
           least(b.y, greatest(b.x, b.counts_from))
    FROM (SELECT a.*,
                 least(a.y, greatest(a.x, date_trunc('day', lo - interval '1 microsecond', 'UTC')
                                          + interval '24 hours')) AS dx
          FROM (SELECT e.x, c.days_until, c.counts_from,
                       greatest(e.x, CASE WHEN date_trunc('hour', hi) < c.until THEN date_trunc('hour', hi)
                                          ELSE date_trunc('minute', hi) END) AS y
                FROM sync_rollup_compacted AS c
                CROSS JOIN LATERAL (
                    SELECT least(hi, CASE WHEN lo < c.until
                                          THEN date_trunc('hour', lo - interval '1 microsecond') + interval '1 hour'
                                          ELSE date_trunc('minute', lo - interval '1 microsecond') + interval '1 minute'
                                          END) AS x) AS e) AS a) AS b
$f$;

-- The final operations of a window [lo, hi) of enqueued_at in the shape of sync_rollup_minute (slot
-- -1 marks rows summed from raw operations): day, hour and minute rows inside [x, y) and the raw
-- operations of the part hours or minutes at its edges (sync_rollup_bounds): exact for any window, at a
-- cost flat in history.  Every dashboard aggregate over a window reads this (but syncs over time).
CREATE OR REPLACE FUNCTION sync_rollup_window(lo timestamptz, hi timestamptz) RETURNS SETOF sync_rollup_minute
LANGUAGE sql STABLE AS $f$
    -- The bounds as scalar subqueries (run once, first): index conditions for each range below; the
    -- edges are at most an hour wide, which bounds each raw range by the parameters alone, so the
    -- partitions outside it are pruned before anything runs.
    SELECT r.* FROM sync_rollup_day AS r
    WHERE r.bucket >= (SELECT dx FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT dy FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT r.* FROM sync_rollup_hour AS r
    WHERE r.bucket >= (SELECT x FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT dx FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT r.* FROM sync_rollup_hour AS r
    WHERE r.bucket >= (SELECT dy FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT y FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT r.* FROM sync_rollup_minute AS r
    WHERE r.bucket >= (SELECT x FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT y FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT date_trunc('minute', o.enqueued_at), o.status, o.trigger, o.priority, o.provider,
           coalesce(o.error_code, ''), -1::smallint, count(*), sum(o.attempts), sum(o.requeues),
           sync_hist(sync_latency_bin(o.duration_ms)), sync_hist(sync_latency_bin(o.queue_wait_ms))
    FROM (SELECT * FROM sync_operations AS o
          WHERE o.enqueued_at >= lo AND o.enqueued_at < (SELECT x FROM sync_rollup_bounds(lo, hi))
            AND o.enqueued_at < lo + interval '1 hour'
          UNION ALL
          SELECT * FROM sync_operations AS o
          WHERE o.enqueued_at >= (SELECT y FROM sync_rollup_bounds(lo, hi)) AND o.enqueued_at < hi
            AND o.enqueued_at >= hi - interval '1 hour') AS o
    WHERE o.status IN ('succeeded', 'partial', 'failed')
    GROUP BY 1, 2, 3, 4, 5, 6
$f$;
-- The same for chain reads (sync_rollup_chain_minute's shape).
CREATE OR REPLACE FUNCTION sync_rollup_chain_window(lo timestamptz, hi timestamptz)
RETURNS SETOF sync_rollup_chain_minute LANGUAGE sql STABLE AS $f$
    SELECT r.* FROM sync_rollup_chain_day AS r
    WHERE r.bucket >= (SELECT dx FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT dy FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT r.* FROM sync_rollup_chain_hour AS r
    WHERE r.bucket >= (SELECT x FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT dx FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT r.* FROM sync_rollup_chain_hour AS r
    WHERE r.bucket >= (SELECT dy FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT y FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT r.* FROM sync_rollup_chain_minute AS r
    WHERE r.bucket >= (SELECT x FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT y FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT date_trunc('minute', o.enqueued_at), cr.key::int, coalesce(cr.value ->> 'status', 'unknown'),
           coalesce(cr.value ->> 'error_code', ''), -1::smallint, count(*),
           sync_hist(sync_latency_bin((cr.value ->> 'duration_ms')::int))
    FROM (SELECT * FROM sync_operations AS o
          WHERE o.enqueued_at >= lo AND o.enqueued_at < (SELECT x FROM sync_rollup_bounds(lo, hi))
            AND o.enqueued_at < lo + interval '1 hour'
          UNION ALL
          SELECT * FROM sync_operations AS o
          WHERE o.enqueued_at >= (SELECT y FROM sync_rollup_bounds(lo, hi)) AND o.enqueued_at < hi
            AND o.enqueued_at >= hi - interval '1 hour') AS o
    CROSS JOIN LATERAL jsonb_each(o.chain_results) AS cr
    WHERE o.status IN ('succeeded', 'partial', 'failed') AND cr.key ~ '^[0-9]+$'
    GROUP BY 1, 2, 3, 4
$f$;
-- The final operations of a window by minute (or hour, where per-minute counts are gone) and status,
-- counts alone: what syncs over time reads, whose bars may be shorter than an hour.  An hour row lands
-- at its hour, so a bar is a whole number of hours wherever hours are read (the 7 d and 30 d ranges).
CREATE OR REPLACE FUNCTION sync_rollup_count_window(lo timestamptz, hi timestamptz)
RETURNS TABLE (bucket timestamptz, status text, syncs bigint) LANGUAGE sql STABLE AS $f$
    SELECT r.bucket, r.status, r.syncs FROM sync_rollup_hour AS r
    WHERE r.bucket >= (SELECT x FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT cf FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT r.bucket, r.status, r.syncs FROM sync_rollup_minute_counts AS r
    WHERE r.bucket >= (SELECT cf FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT y FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT r.bucket, r.status, r.syncs FROM sync_rollup_minute AS r
    WHERE r.bucket >= (SELECT x FROM sync_rollup_bounds(lo, hi)) AND r.bucket < (SELECT y FROM sync_rollup_bounds(lo, hi))
    UNION ALL
    SELECT date_trunc('minute', o.enqueued_at), o.status, count(*)
    FROM (SELECT o.enqueued_at, o.status FROM sync_operations AS o
          WHERE o.enqueued_at >= lo AND o.enqueued_at < (SELECT x FROM sync_rollup_bounds(lo, hi))
            AND o.enqueued_at < lo + interval '1 hour'
          UNION ALL
          SELECT o.enqueued_at, o.status FROM sync_operations AS o
          WHERE o.enqueued_at >= (SELECT y FROM sync_rollup_bounds(lo, hi)) AND o.enqueued_at < hi
            AND o.enqueued_at >= hi - interval '1 hour') AS o
    WHERE o.status IN ('succeeded', 'partial', 'failed')
    GROUP BY 1, 2
$f$;

-- Count the operations already final in [since, until) of enqueued_at, an hour at a time (a history
-- made before the rollups, or written by bulk loads that bypass the final-status updates).
CREATE OR REPLACE FUNCTION sync_rollup_backfill(since timestamptz, until timestamptz) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
    hour timestamptz := date_trunc('hour', since);
BEGIN
    WHILE hour < until LOOP
        PERFORM sync_rollup_add(ARRAY(
            SELECT o FROM sync_operations AS o
            WHERE o.enqueued_at >= greatest(hour, since) AND o.enqueued_at < least(hour + interval '1 hour', until)
              AND o.status IN ('succeeded', 'partial', 'failed')));
        hour := hour + interval '1 hour';
    END LOOP;
END
$f$;

-- The trigger: one call per statement with the operations it made final (a transition table), so a
-- batch of finish_attempts costs one pass over the rollups, not one per operation.
CREATE OR REPLACE FUNCTION sync_operations_rollup_trigger() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE
    ops sync_operations[];
BEGIN
    ops := ARRAY(
        SELECT n::sync_operations FROM newly AS n JOIN previously AS p ON p.id = n.id AND p.enqueued_at = n.enqueued_at
        WHERE n.status IN ('succeeded', 'partial', 'failed')
          AND p.status NOT IN ('succeeded', 'partial', 'failed'));
    -- Most updates make nothing final (an attempt starting, a retry, a re-send): no rollup touched.
    IF cardinality(ops) > 0 THEN
        PERFORM sync_rollup_add(ops);
    END IF;
    RETURN NULL;
END
$f$;

-- Databases made before the rollups: count the operations already final once, when the rollups
-- are created (the trigger below does not exist yet, so nothing is counted twice).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'sync_operations_rollup'
                   AND tgrelid = 'sync_operations'::regclass) THEN
        PERFORM sync_rollup_backfill(min(enqueued_at), max(enqueued_at) + interval '1 second')
        FROM sync_operations WHERE status IN ('succeeded', 'partial', 'failed') HAVING count(*) > 0;
        CREATE TRIGGER sync_operations_rollup AFTER UPDATE ON sync_operations
            REFERENCING OLD TABLE AS previously NEW TABLE AS newly
            FOR EACH STATEMENT EXECUTE FUNCTION sync_operations_rollup_trigger();
    END IF;
END $$;

-- The users page's spans for the data already there (built whole the first time; one step at a later
-- release; housekeeping catches up the rest).  The first build holds the writers as the latest-pair
-- backfill above does, for the same reason: an operation finishing before this release commits would run
-- the earlier function, which does not add to sync_rollup_user_since.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM sync_rollup_user_span_through WHERE NOT isfinite(through_day)) THEN
        LOCK TABLE sync_operations IN SHARE ROW EXCLUSIVE MODE;
    END IF;
END $$;
SELECT sync_rollup_user_span_step(s.span_days, now()) FROM sync_rollup_user_span_through AS s ORDER BY s.span_days;

-- Current holdings.  A chain's rows are replaced by one statement, so a reader
-- never sees half a portfolio; `as_of` is when the provider was read.
CREATE TABLE IF NOT EXISTS holdings (
    user_id          text          NOT NULL,
    wallet_address   text          NOT NULL,
    chain_id         int           NOT NULL,
    token_address    text          NOT NULL CHECK (token_address ~ '^0x[0-9a-f]{40}$'),
    symbol           text          NOT NULL,
    name             text          NOT NULL,
    decimals         int           NOT NULL CHECK (decimals BETWEEN 0 AND 255),
    raw_balance      numeric(78,0) NOT NULL CHECK (raw_balance >= 0),
    balance          numeric       NOT NULL,   -- raw_balance / 10^decimals, exact
    price_usd        numeric,                  -- null: no known price (shown as unpriced)
    value_usd        numeric,                  -- null when price_usd is null
    price_source     text,
    priced_at        timestamptz,
    provider         text          NOT NULL,   -- where the balance came from ('simulated' is labelled as such)
    operation_id     uuid          NOT NULL,
    as_of            timestamptz   NOT NULL,
    updated_at       timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, wallet_address, chain_id, token_address)
);
CREATE INDEX IF NOT EXISTS holdings_wallet_idx ON holdings (wallet_address);
-- Added after the first release: applied to databases created before it.  The block every balance of the
-- chain's read was read at (null: the provider has no block); a token whose decimals() could not be read
-- keeps its integer balance with null decimals and null balance, and is never valued.
ALTER TABLE holdings ADD COLUMN IF NOT EXISTS block_number bigint CHECK (block_number >= 0);
ALTER TABLE holdings ALTER COLUMN decimals DROP NOT NULL;
ALTER TABLE holdings ALTER COLUMN balance DROP NOT NULL;

-- Which read of the provider each wallet's chain currently shows.  A chain's holdings are
-- replaced only by a read newer than this one, so a late or repeated delivery never brings
-- back older data (not even tokens since sold, nor holdings on a chain since emptied).
CREATE TABLE IF NOT EXISTS wallet_chain_snapshots (
    user_id          text        NOT NULL,
    wallet_address   text        NOT NULL,
    chain_id         int         NOT NULL,
    as_of            timestamptz NOT NULL,
    operation_id     uuid        NOT NULL,
    PRIMARY KEY (user_id, wallet_address, chain_id)
);
-- Added after the first release: the block of that read, which orders reads when both have one.
ALTER TABLE wallet_chain_snapshots ADD COLUMN IF NOT EXISTS block_number bigint CHECK (block_number >= 0);
-- Added later: a digest of the chain's holdings as stored (storage.operations.holdings_digest), so a read
-- that finds them unchanged is finished without sending them, and the operation whose read it was taken
-- with.  It is trusted only while that is the snapshot's operation: a writer that does not keep the
-- digest (a release before it, still running or rolled back to) moves the snapshot and leaves it stale.
ALTER TABLE wallet_chain_snapshots ADD COLUMN IF NOT EXISTS holdings_digest text;
ALTER TABLE wallet_chain_snapshots ADD COLUMN IF NOT EXISTS digest_of uuid;

-- Wallets the system keeps fresh: who asked, which chains, how the last syncs went.
CREATE TABLE IF NOT EXISTS tracked_wallets (
    user_id              text        NOT NULL,
    wallet_address       text        NOT NULL,
    chain_ids            int[]       NOT NULL,
    status               text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    added_at             timestamptz NOT NULL DEFAULT now(),
    last_requested_at    timestamptz,            -- last request by the user (not by the scheduler)
    last_operation_id    uuid,
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    consecutive_failures int         NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, wallet_address)
);
CREATE INDEX IF NOT EXISTS tracked_wallets_freshness_idx ON tracked_wallets (status, last_success_at);
-- The scheduler's active tier: the few wallets whose owner requested a sync recently
-- (storage/scheduling.sql, select_stale_wallets; its idle tier uses the index above).
CREATE INDEX IF NOT EXISTS tracked_wallets_requested_idx ON tracked_wallets (last_requested_at)
    WHERE status = 'active';

-- What each scheduler tick did and why (written by the periodic actors, shown by the dashboard).
CREATE TABLE IF NOT EXISTS scheduler_ticks (
    schedule         text        NOT NULL,   -- the periodic actor's name
    tick_at          timestamptz NOT NULL,   -- the cron tick (periodiq's scheduled_at)
    scheduler_id     text,                   -- host:pid of the periodiq process that enqueued it
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    stale_count      int,                    -- wallets found stale
    requested_count  int,                    -- syncs requested
    held_back_count  int,                    -- stale wallets not requested (backpressure, batch cap)
    backlog          int,                    -- depth of the low queue when the tick ran
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- why: thresholds, deleted rows, ...
    PRIMARY KEY (schedule, tick_at)
);
-- The dashboard shows the latest ticks of every schedule.
CREATE INDEX IF NOT EXISTS scheduler_ticks_recent_idx ON scheduler_ticks (tick_at DESC);

-- Token discovery (chaindata/tokens/discovery.py): per wallet and chain, the blocks whose ERC-20
-- Transfer logs to the wallet were scanned, and the token contracts they named; a later sync scans
-- only blocks after scanned_to (less a few, for reorganisations).  Chain facts, so per wallet, not per user.
CREATE TABLE IF NOT EXISTS token_discovery_cursors (
    wallet_address   text        NOT NULL CHECK (wallet_address ~ '^0x[0-9a-f]{40}$'),
    chain_id         int         NOT NULL,
    scanned_from     bigint      NOT NULL CHECK (scanned_from >= 0),
    scanned_to       bigint      NOT NULL CHECK (scanned_to >= scanned_from - 1),
    tokens           text[]      NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (wallet_address, chain_id)
);

-- Spam and unknown tokens (chaindata/portfolio.py): `listed` says a token list names the token (the
-- native coin counts as listed); `possible_spam` marks a token neither listed nor priced, kept but never
-- counted in a total.
ALTER TABLE holdings ADD COLUMN IF NOT EXISTS listed boolean NOT NULL DEFAULT false;
ALTER TABLE holdings ADD COLUMN IF NOT EXISTS possible_spam boolean NOT NULL DEFAULT false;
