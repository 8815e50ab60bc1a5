-- portfolio-sync schema.  Idempotent: applied on every deploy by the Procfile's
-- `release` process (python -m storage.migrate) and by `./dev up`.
-- PostgreSQL holds data and the audit trail only; the job queue is Redis.

-- One row per accepted sync request, updated through its life:
--   queued -> running -> (retrying -> running)* -> succeeded | partial | failed
-- (partial: some chains were stored, the others still failed after the last attempt)
CREATE TABLE IF NOT EXISTS sync_operations (
    id               uuid PRIMARY KEY,
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
    requeues         int         NOT NULL DEFAULT 0  -- times the reconciler sent it again
);

-- Databases made before the `partial` status: widen the status check in place (once; a no-op after).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
               WHERE conrelid = 'sync_operations'::regclass AND conname = 'sync_operations_status_check'
                 AND pg_get_constraintdef(oid) NOT LIKE '%partial%') THEN
        ALTER TABLE sync_operations DROP CONSTRAINT sync_operations_status_check;
        ALTER TABLE sync_operations ADD CONSTRAINT sync_operations_status_check
            CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'partial', 'failed'));
    END IF;
END $$;
-- Added after the first release: applied to databases created before it.
ALTER TABLE sync_operations ADD COLUMN IF NOT EXISTS requeues int NOT NULL DEFAULT 0;

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
-- Operations not yet final: small, and what a reconciler scans.
CREATE INDEX IF NOT EXISTS sync_operations_active_idx ON sync_operations (enqueued_at)
    WHERE status IN ('queued', 'running', 'retrying');

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
