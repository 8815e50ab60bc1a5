-- Token discovery's cursors (storage.discovery), one named block each; see schema.sql.

-- get_discovery_cursor --
-- The cursor of one wallet on one chain, if a scan ever ran.
SELECT scanned_from, scanned_to, tokens
FROM token_discovery_cursors
WHERE wallet_address = %(wallet_address)s AND chain_id = %(chain_id)s;

-- save_discovery_cursor --
-- Store a scan's cursor.  Two scans of one wallet may end in either order: the blocks covered only
-- grow and the tokens are the union of both, so a late writer never loses what another found.
INSERT INTO token_discovery_cursors AS cur (wallet_address, chain_id, scanned_from, scanned_to, tokens)
VALUES (%(wallet_address)s, %(chain_id)s, %(scanned_from)s, %(scanned_to)s, %(tokens)s::text[])
ON CONFLICT (wallet_address, chain_id) DO UPDATE
SET scanned_from = least(cur.scanned_from, excluded.scanned_from),
    scanned_to = greatest(cur.scanned_to, excluded.scanned_to),
    tokens = ARRAY(SELECT DISTINCT t FROM unnest(cur.tokens || excluded.tokens) AS t ORDER BY t),
    updated_at = now();
