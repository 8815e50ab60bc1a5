-- Every SQL statement of the worker and its producers, one named block each.
-- A block starts with `-- name --`, then a line of description; storage.queries
-- loads them by name.  Parameters are always bound; the one exception, the audit trail's partitions'
-- bounds {lo} and {hi}, are written in as literals by storage.operations.bounded (psycopg.sql), from
-- times it computes itself, never from input.

-- insert_operations --
-- Record accepted requests as queued operations (one statement for a whole batch) and
-- remember each wallet as tracked; a user's own request refreshes last_requested_at.
-- The arrays are bound in binary: their text form, quoted and escaped element by element, then
-- parsed back by the server, cost six times as long for a batch of 500.
WITH new AS (
    SELECT *
    FROM unnest(%(ids)b::uuid[], %(user_ids)b::text[], %(wallets)b::text[], %(chain_ids)b::text[],
                %(priorities)b::text[], %(triggers)b::text[], %(message_ids)b::text[])
         AS r(id, user_id, wallet_address, chain_ids, priority, trigger, message_id)
), inserted AS (
    INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger, provider, message_id)
    SELECT id, user_id, wallet_address, chain_ids::int[], priority, trigger, %(provider)s, message_id
    FROM new
    RETURNING id
)
INSERT INTO tracked_wallets AS t (user_id, wallet_address, chain_ids, last_requested_at, last_operation_id)
SELECT DISTINCT ON (user_id, wallet_address)
       user_id, wallet_address, chain_ids::int[],
       CASE WHEN trigger = 'scheduled' THEN NULL ELSE now() END, id
FROM new
ORDER BY user_id, wallet_address
ON CONFLICT (user_id, wallet_address) DO UPDATE
SET chain_ids = (SELECT array_agg(DISTINCT c ORDER BY c) FROM unnest(t.chain_ids || excluded.chain_ids) AS c),
    last_requested_at = coalesce(excluded.last_requested_at, t.last_requested_at),
    last_operation_id = excluded.last_operation_id;

-- start_attempts --
-- Mark operations running for a new attempt and return what the worker needs, for a batch of
-- attempts at once (storage.group_commit); no row for an operation that is unknown or already final
-- (a duplicate delivery).  started_at, PostgreSQL's clock, is the time of the attempt's reads: the one
-- clock every worker shares, so which read is newer never depends on a worker host's clock.
-- The bounds of enqueued_at are the whole weeks around the ids' times, literals that storage.operations
-- writes in (psycopg.sql): PostgreSQL prunes the other partitions in the plan it keeps for the statement,
-- a generic plan made once per connection and week (storage.pool) instead of at every call.  As
-- parameters, they left each call to be planned anew, since a generic plan could prune no partition
-- ('-infinity' to 'infinity': every partition).
UPDATE sync_operations AS s
SET status = 'running',
    attempts = s.attempts + 1,
    started_at = clock_timestamp(),
    queue_wait_ms = coalesce(s.queue_wait_ms,
                             (extract(epoch FROM clock_timestamp() - s.enqueued_at) * 1000)::int),
    worker_id = a.worker_id,
    message_id = a.message_id
FROM unnest(%(ids)s::uuid[], %(worker_ids)s::text[], %(message_ids)s::text[]) AS a(id, worker_id, message_id)
WHERE s.id = a.id
  AND s.status NOT IN ('succeeded', 'partial', 'failed')  -- a condition the active operations' index cannot serve
  AND s.id = ANY(%(ids)s::uuid[])  -- the planner reads the array's size; unnest's it guesses (100)
  AND s.enqueued_at >= {lo} AND s.enqueued_at < {hi}
RETURNING s.id, s.user_id, s.wallet_address, s.chain_ids, s.priority, s.trigger, s.attempts, s.chain_results,
          s.queue_wait_ms, s.started_at,
          -- Each chain's stored holdings as a digest (storage.operations.holdings_digest), if it describes the
          -- snapshot's current read (digest_of): a read whose holdings have the same digest is finished
          -- without sending them (finish_attempts' unchanged chains).
          (SELECT jsonb_object_agg(w.chain_id::text, w.holdings_digest) FROM wallet_chain_snapshots AS w
           WHERE w.user_id = s.user_id AND w.wallet_address = s.wallet_address AND w.holdings_digest IS NOT NULL
             AND w.digest_of = w.operation_id)
              AS holdings_digests;

-- finish_attempts --
-- End a batch of attempts in one statement: each operation's new status and results, the holdings
-- of every chain read in its attempt (each chain replaced whole, and only by a newer read than the
-- one stored), and the tracked wallet's health.  Of a chain's holdings only what changed is written:
-- its snapshot row takes the read (time, operation, block), a token whose row is equal is left as it
-- is (readers take the read from the snapshot), a changed one is upserted, a vanished one deleted.
-- A chain in unchanged_chains comes without its holdings: its read's holdings have the digest its
-- snapshot had when the attempt started, so only the snapshot takes the read, if it still has that
-- digest.  If another writer changed the chain meanwhile (two operations of one wallet at once, which
-- admission prevents but a lost in-flight entry allows), the chain keeps that writer's read, even an
-- older one, until the next sync.  An operation already final is left alone, and its id is not
-- returned.  (Two attempts of one wallet in one batch would touch a row twice, which
-- PostgreSQL refuses; admission keeps one operation per wallet in flight, and storage.group_commit
-- writes such a batch again one attempt at a time.)
WITH attempt AS (
    SELECT *
    FROM jsonb_to_recordset(%(attempts)s::jsonb) AS a(
        id uuid, status text, refund_attempt boolean, holdings_count int, total_value_usd numeric,
        unpriced_count int, chain_results jsonb, error_code text, error_message text, provider text,
        as_of timestamptz, synced_chains int[], chain_blocks jsonb, holdings jsonb, digests jsonb,
        unchanged_chains int[])
), op AS (
    UPDATE sync_operations AS s
    SET status = a.status,
        finished_at = CASE WHEN a.status IN ('succeeded', 'partial', 'failed') THEN clock_timestamp() END,
        duration_ms = (extract(epoch FROM clock_timestamp() - s.started_at) * 1000)::int,
        -- An attempt that called no provider (every chain's circuit open) does not use one up.
        attempts = s.attempts - CASE WHEN a.refund_attempt THEN 1 ELSE 0 END,
        holdings_count = a.holdings_count,
        total_value_usd = a.total_value_usd,
        unpriced_count = a.unpriced_count,
        chain_results = s.chain_results || a.chain_results,
        error_code = a.error_code,
        error_message = a.error_message,
        provider = a.provider  -- the worker's provider, which may differ from the producer's
    FROM attempt AS a
    WHERE s.id = a.id AND s.status NOT IN ('succeeded', 'partial', 'failed')
      AND s.id = ANY(%(ids)s::uuid[])  -- index lookups: the planner guesses 100 rows for a recordset
      AND s.enqueued_at >= {lo} AND s.enqueued_at < {hi}  -- the weeks' partitions, as in start_attempts
    RETURNING s.id, s.user_id, s.wallet_address, a.status, a.provider, a.as_of, a.synced_chains, a.chain_blocks,
              a.holdings, a.digests, coalesce(a.unchanged_chains, ARRAY[]::int[]) AS unchanged_chains
), fresh AS (
    -- The chains each attempt may replace: those never stored, or stored from an older read.  Older is by
    -- block number when both reads have one (two workers' clocks, or two nodes, may disagree on which read
    -- came last; the chain does not), by the time of the read otherwise, or between reads of one block.
    -- An unchanged chain is never inserted (its holdings are not here to go with it), and moves a snapshot
    -- only if the snapshot still has the digest the attempt compared with, checked again on the row
    -- locked.  The digest describes the rows only if no other writer changed the chain since this
    -- statement's start (its delete saw the rows as they were then): else it is left null, and the next
    -- read is written whole.
    INSERT INTO wallet_chain_snapshots AS snap (user_id, wallet_address, chain_id, as_of, operation_id, block_number,
                                                holdings_digest, digest_of)
    SELECT op.user_id, op.wallet_address, sc.chain_id, op.as_of, op.id, (op.chain_blocks ->> sc.chain_id::text)::bigint,
           op.digests ->> sc.chain_id::text, op.id
    FROM op, unnest(op.synced_chains) AS sc(chain_id)
    WHERE sc.chain_id <> ALL(op.unchanged_chains)
       OR EXISTS (SELECT 1 FROM wallet_chain_snapshots AS cur
                  WHERE (cur.user_id, cur.wallet_address, cur.chain_id) = (op.user_id, op.wallet_address, sc.chain_id)
                    AND cur.holdings_digest = op.digests ->> sc.chain_id::text AND cur.digest_of = cur.operation_id)
    ON CONFLICT (user_id, wallet_address, chain_id) DO UPDATE
    SET as_of = excluded.as_of, operation_id = excluded.operation_id, block_number = excluded.block_number,
        holdings_digest = CASE WHEN snap.operation_id IS NOT DISTINCT FROM
                                    (SELECT was.operation_id FROM wallet_chain_snapshots AS was
                                     WHERE (was.user_id, was.wallet_address, was.chain_id)
                                           = (excluded.user_id, excluded.wallet_address, excluded.chain_id))
                               THEN excluded.holdings_digest END,
        digest_of = excluded.operation_id
    WHERE CASE WHEN snap.block_number IS NULL OR excluded.block_number IS NULL OR snap.block_number = excluded.block_number
               THEN snap.as_of < excluded.as_of
               ELSE snap.block_number < excluded.block_number END
      AND ((snap.holdings_digest = excluded.holdings_digest AND snap.digest_of = snap.operation_id)
           OR excluded.chain_id <> ALL(coalesce((SELECT op.unchanged_chains FROM op
                                                 WHERE op.id = excluded.operation_id), ARRAY[]::int[])))
    RETURNING user_id, wallet_address, chain_id, operation_id, block_number
), new AS (
    SELECT op.user_id, op.wallet_address, op.id AS operation_id, op.provider, op.as_of, fresh.block_number, h.*
    FROM op
    JOIN fresh ON fresh.operation_id = op.id
    CROSS JOIN LATERAL jsonb_to_recordset(op.holdings) AS h(
        chain_id int, token_address text, symbol text, name text, decimals int,
        raw_balance numeric, balance numeric, price_usd numeric, value_usd numeric,
        price_source text, priced_at timestamptz, listed boolean, possible_spam boolean)
    WHERE h.chain_id = fresh.chain_id
), removed AS (
    DELETE FROM holdings AS old
    USING fresh JOIN op ON op.id = fresh.operation_id
    WHERE old.user_id = fresh.user_id AND old.wallet_address = fresh.wallet_address
      AND old.chain_id = fresh.chain_id AND fresh.chain_id <> ALL(op.unchanged_chains)  -- their rows stay
      AND old.wallet_address = ANY(ARRAY(SELECT wallet_address FROM op))  -- index lookups, not a scan
      AND NOT EXISTS (SELECT 1 FROM new
                      WHERE new.user_id = old.user_id AND new.wallet_address = old.wallet_address
                        AND new.chain_id = old.chain_id AND new.token_address = old.token_address)
), upserted AS (
    INSERT INTO holdings AS cur (user_id, wallet_address, chain_id, token_address, symbol, name, decimals,
                                 raw_balance, balance, price_usd, value_usd, price_source, priced_at,
                                 listed, possible_spam, provider, operation_id, as_of, block_number)
    SELECT user_id, wallet_address, chain_id, token_address, symbol, name, decimals,
           raw_balance, balance, price_usd, value_usd, price_source, priced_at,
           coalesce(listed, false), coalesce(possible_spam, false), provider, operation_id, as_of, block_number
    FROM new
    ON CONFLICT (user_id, wallet_address, chain_id, token_address) DO UPDATE
    SET symbol = excluded.symbol, name = excluded.name, decimals = excluded.decimals,
        raw_balance = excluded.raw_balance, balance = excluded.balance,
        price_usd = excluded.price_usd, value_usd = excluded.value_usd,
        price_source = excluded.price_source, priced_at = excluded.priced_at,
        listed = excluded.listed, possible_spam = excluded.possible_spam,
        provider = excluded.provider, operation_id = excluded.operation_id,
        as_of = excluded.as_of, block_number = excluded.block_number, updated_at = now()
    -- A re-sync mostly finds what is stored: an equal row is not rewritten (no new row version, no index
    -- entries, no WAL).  operation_id, as_of and block_number are the read's, kept on the chain's snapshot.
    WHERE (cur.symbol, cur.name, cur.decimals, cur.raw_balance, cur.balance, cur.price_usd, cur.value_usd,
           cur.price_source, cur.priced_at, cur.listed, cur.possible_spam, cur.provider)
          IS DISTINCT FROM
          (excluded.symbol, excluded.name, excluded.decimals, excluded.raw_balance, excluded.balance,
           excluded.price_usd, excluded.value_usd, excluded.price_source, excluded.priced_at, excluded.listed,
           excluded.possible_spam, excluded.provider)
), tracked AS (
    UPDATE tracked_wallets AS t
    SET last_operation_id = op.id,
        last_success_at = CASE WHEN op.status = 'succeeded' THEN now() ELSE t.last_success_at END,
        -- A partial sync is a failure to the scheduler: the wallet is not fresh, and is tried again
        -- with the failures' backoff (the chains it did store are replaced by newer reads only).
        last_failure_at = CASE WHEN op.status IN ('partial', 'failed') THEN now() ELSE t.last_failure_at END,
        consecutive_failures = CASE op.status WHEN 'succeeded' THEN 0
                                              WHEN 'partial' THEN t.consecutive_failures + 1
                                              WHEN 'failed' THEN t.consecutive_failures + 1
                                              ELSE t.consecutive_failures END
    FROM op
    WHERE t.user_id = op.user_id AND t.wallet_address = op.wallet_address
      AND t.user_id = ANY(ARRAY(SELECT user_id FROM op)) AND t.wallet_address = ANY(ARRAY(SELECT wallet_address FROM op))
)
SELECT id FROM op;

-- fail_operation --
-- Fail an operation that never ran to the end (malformed message, expired, not enqueued).
-- The bounds of enqueued_at: as in start_attempts.
UPDATE sync_operations
SET status = 'failed', finished_at = clock_timestamp(), error_code = %(error_code)s, error_message = %(error_message)s
WHERE id = %(id)s AND status NOT IN ('succeeded', 'partial', 'failed')
  AND enqueued_at >= {lo} AND enqueued_at < {hi}
RETURNING user_id, wallet_address;

-- get_operation --
-- One operation's full record.  The bounds of enqueued_at: as in start_attempts.
SELECT id::text, user_id, wallet_address, chain_ids, priority, trigger, provider, status, attempts,
       enqueued_at, started_at, finished_at, queue_wait_ms, duration_ms, holdings_count,
       total_value_usd, unpriced_count, chain_results, error_code, error_message, worker_id, message_id,
       requeues
FROM sync_operations
WHERE id = %(id)s
  AND enqueued_at >= {lo} AND enqueued_at < {hi};

-- get_operations --
-- Several operations' full records (a producer checks the operations that hold its wallets).
SELECT id::text, user_id, wallet_address, chain_ids, priority, trigger, provider, status, attempts,
       enqueued_at, started_at, finished_at, queue_wait_ms, duration_ms, holdings_count,
       total_value_usd, unpriced_count, chain_results, error_code, error_message, worker_id, message_id,
       requeues
FROM sync_operations
WHERE id = ANY(%(ids)s::uuid[]);

-- get_holdings --
-- A wallet's current holdings, most valuable first, unpriced last.  The read each chain's rows show
-- (operation, time, block) is the chain's snapshot: finish_attempts leaves a row equal to the stored
-- one unwritten, so the row's own columns say when it last changed (updated_at), not when it was read.
SELECT h.chain_id, h.token_address, h.symbol, h.name, h.decimals, h.raw_balance, h.balance, h.price_usd,
       h.value_usd, h.price_source, h.priced_at, h.listed, h.possible_spam, h.provider,
       coalesce(s.operation_id, h.operation_id)::text AS operation_id, coalesce(s.as_of, h.as_of) AS as_of,
       CASE WHEN s.operation_id IS NULL THEN h.block_number ELSE s.block_number END AS block_number,
       h.updated_at
FROM holdings AS h
LEFT JOIN wallet_chain_snapshots AS s
  ON s.user_id = h.user_id AND s.wallet_address = h.wallet_address AND s.chain_id = h.chain_id
WHERE h.user_id = %(user_id)s AND h.wallet_address = %(wallet_address)s
ORDER BY h.chain_id, h.value_usd DESC NULLS LAST, h.symbol;

-- reconcile_candidates --
-- Operations not final whose message or worker may be lost: queued or retrying for longer than a
-- grace period, running for longer than lease_ms.  The reconciler checks each in Redis.
SELECT id::text, user_id, wallet_address, priority, status, attempts, message_id, enqueued_at, started_at,
       enqueued_at < now() - %(max_age_ms)s * interval '1 millisecond' AS too_old
FROM sync_operations
WHERE status IN ('queued', 'running', 'retrying')
  AND enqueued_at >= %(after)s
  AND CASE status
        WHEN 'queued' THEN enqueued_at < now() - %(grace_ms)s * interval '1 millisecond'
        WHEN 'running' THEN started_at < now() - %(lease_ms)s * interval '1 millisecond'
        ELSE started_at < now() - %(grace_ms)s * interval '1 millisecond'
      END
ORDER BY enqueued_at
LIMIT %(limit)s;

-- requeue_operation --
-- The reconciler sends an operation again: it is queued anew under its new message, unless it moved on
-- (a new attempt started, or it finished) since the reconciler looked at it.
UPDATE sync_operations
SET status = 'queued', message_id = %(message_id)s, requeues = requeues + 1
WHERE id = %(id)s AND status = %(status)s AND started_at IS NOT DISTINCT FROM %(started_at)s
RETURNING id;

-- fail_stuck_operation --
-- The reconciler gives up on an operation (too old, or out of attempts), unless it moved on since.
UPDATE sync_operations
SET status = 'failed', finished_at = clock_timestamp(), error_code = %(error_code)s, error_message = %(error_message)s
WHERE id = %(id)s AND status = %(status)s AND started_at IS NOT DISTINCT FROM %(started_at)s
RETURNING user_id, wallet_address;
