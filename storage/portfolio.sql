-- The portfolio, read: what a wallet holds for one user, as the core service asks for it.
-- Same format as queries.sql: one named block each, parameters bound.

-- wallet_state --
-- Everything but the holdings themselves, in one row (no row: no sync of this wallet was ever requested
-- for this user):
-- the chains tracked, each chain's current snapshot, and the latest operation with its per-chain results.
-- Amounts travel as text, so they reach Python exactly.
WITH latest AS (
    SELECT id, status, chain_ids, chain_results, enqueued_at, finished_at
    FROM sync_operations
    WHERE wallet_address = %(wallet_address)s AND user_id = %(user_id)s
    ORDER BY enqueued_at DESC
    LIMIT 1
)
SELECT t.chain_ids AS tracked_chain_ids,
       t.status AS tracking,
       latest.id::text AS last_operation_id,
       latest.status AS last_operation_status,
       latest.chain_ids AS last_operation_chain_ids,
       latest.chain_results AS last_operation_chain_results,
       latest.enqueued_at AS last_operation_enqueued_at,
       latest.finished_at AS last_operation_finished_at,
       coalesce((SELECT jsonb_object_agg(s.chain_id::text,
                                         jsonb_build_object('as_of', s.as_of, 'operation_id', s.operation_id,
                                                            'block_number', s.block_number))
                 FROM wallet_chain_snapshots AS s
                 WHERE s.user_id = %(user_id)s AND s.wallet_address = %(wallet_address)s), '{}'::jsonb)
           AS snapshots,
       now() AS read_at
FROM (SELECT 1) AS one
LEFT JOIN tracked_wallets AS t ON t.user_id = %(user_id)s AND t.wallet_address = %(wallet_address)s
LEFT JOIN latest ON true
WHERE latest.id IS NOT NULL;
