-- The reads of the operating surfaces (CLI, HTTP API, readiness), one named block each
-- (loaded by storage.queries with the others).  Parameters are always bound.

-- wallet_syncs --
-- A wallet's latest operations, newest first, optionally of one user (sync_operations_wallet_idx).
SELECT id::text, user_id, wallet_address, chain_ids, priority, trigger, provider, status, attempts,
       enqueued_at, started_at, finished_at, queue_wait_ms, duration_ms, holdings_count,
       total_value_usd, unpriced_count, chain_results, error_code, error_message
FROM sync_operations
WHERE wallet_address = %(wallet_address)s
  AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s::text)
ORDER BY enqueued_at DESC
LIMIT %(limit)s;

-- schema_missing_tables --
-- Readiness: which of the schema's tables do not exist (none once schema.sql is applied).
SELECT coalesce(array_agg(t ORDER BY t) FILTER (WHERE to_regclass(t) IS NULL), '{}') AS missing
FROM unnest(%(tables)s::text[]) AS t;
