"""The scheduler's storage: tracked wallets, what is stale, scheduler ticks and retention.

SQL is in ``scheduling.sql`` (loaded into :data:`storage.queries.QUERIES`); every
function here is one statement, except the retention of ticks, which runs a bounded
number of batches, each its own transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from .pool import get_pool
from .queries import QUERIES

#: Tracked-wallet states shown by :func:`wallet_health` (see ``tracked_wallet_health``).
WALLET_STATES = ("paused", "in_flight", "backing_off", "stale", "fresh")
#: The trailing spans (days) of the users page's rollup, sync_rollup_user_since.
USER_SPANS = (1, 7, 30)


@dataclasses.dataclass(frozen=True)
class Staleness:
    """The rules that make a tracked wallet stale (all durations in seconds).

    ``inflight_window_s``: an operation still queued or running is "in flight" only if it
    was enqueued within this window (the lifetime of the Redis in-flight key), so a row left
    unfinished by a lost job never keeps its wallet from being scheduled again.
    """

    active_window_s: int
    active_interval_s: int
    idle_interval_s: int
    backoff_base_s: int
    backoff_cap_s: int
    inflight_window_s: int

    def params(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StaleWallet:
    user_id: str
    wallet_address: str
    chain_ids: tuple[int, ...]
    tier: str  # 'active' or 'idle'
    due_at: dt.datetime | None  # None: never synced


@dataclasses.dataclass(frozen=True)
class StaleSelection:
    stale_count: int  # stale wallets that may be requested now (the rows are the first of them)
    in_flight_count: int  # stale, but their last operation is still queued or running
    backing_off_count: int  # stale, but failing and waiting for their backoff to pass
    wallets: list[StaleWallet]


def select_stale_wallets(rules: Staleness, *, limit: int) -> StaleSelection:
    """The stale wallets to request now, longest overdue first (at most ``limit``), and the counts."""
    with get_pool().connection() as conn:
        rows = conn.execute(QUERIES["select_stale_wallets"], {**rules.params(), "limit": limit}).fetchall()
    first = rows[0]
    wallets = [StaleWallet(r["user_id"], r["wallet_address"], tuple(r["chain_ids"]), r["tier"], r["due_at"])
               for r in rows if r["user_id"] is not None]
    return StaleSelection(first["stale_count"], first["in_flight_count"], first["backing_off_count"], wallets)


def wallet_health(rules: Staleness, *, user_id: str | None = None, state: str | None = None,
                  limit: int = 100) -> list[dict]:
    """Tracked wallets with their tier, state and next due time, soonest due first."""
    if state is not None and state not in WALLET_STATES:
        raise ValueError(f"state must be one of {', '.join(WALLET_STATES)}, got {state!r}")
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["tracked_wallet_health"],
                            {**rules.params(), "user_id": user_id, "state": state, "limit": limit}).fetchall()


def wallet_health_counts(rules: Staleness) -> list[dict]:
    """``[{state, tier, wallets, max_consecutive_failures}, ...]`` over every tracked wallet."""
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["tracked_wallet_health_counts"], rules.params()).fetchall()


def track_wallet(user_id: str, wallet_address: str, chain_ids: Sequence[int]) -> dict:
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["track_wallet"], {
            "user_id": user_id, "wallet_address": wallet_address, "chain_ids": list(chain_ids)}).fetchone()


def set_wallet_status(user_id: str, wallet_address: str, status: str) -> dict | None:
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["set_tracked_wallet_status"], {
            "user_id": user_id, "wallet_address": wallet_address, "status": status}).fetchone()


def untrack_wallet(user_id: str, wallet_address: str) -> bool:
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["untrack_wallet"], {
            "user_id": user_id, "wallet_address": wallet_address}).fetchone() is not None


def claim_tick(schedule: str, tick_at: dt.datetime, *, scheduler_id: str | None,
               details: dict[str, Any]) -> dt.datetime | None:
    """Start ``schedule``'s tick ``tick_at``; its start time, or ``None`` if that tick was claimed already."""
    with get_pool().connection() as conn:
        row = conn.execute(QUERIES["claim_tick"], {
            "schedule": schedule, "tick_at": tick_at, "scheduler_id": scheduler_id,
            "details": Jsonb(details, dumps=_dumps)}).fetchone()
    return row["started_at"] if row else None


def finish_tick(schedule: str, tick_at: dt.datetime, *, stale_count: int | None = None,
                requested_count: int | None = None, held_back_count: int | None = None,
                backlog: int | None = None, details: dict[str, Any]) -> None:
    with get_pool().connection() as conn:
        conn.execute(QUERIES["finish_tick"], {
            "schedule": schedule, "tick_at": tick_at, "stale_count": stale_count,
            "requested_count": requested_count, "held_back_count": held_back_count, "backlog": backlog,
            "details": Jsonb(details, dumps=_dumps)})


def count_new_scheduled_operations(operation_ids: Sequence[str], *, since: dt.datetime) -> int:
    """How many of ``operation_ids`` are scheduled operations created at or after ``since``."""
    if not operation_ids:
        return 0
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["count_new_scheduled_operations"],
                            {"ids": list(operation_ids), "since": since}).fetchone()["created"]


def recent_ticks(schedule: str | None = None, *, limit: int = 50) -> list[dict]:
    """The latest scheduler ticks (what each did and why), newest first."""
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["recent_ticks"], {"schedule": schedule, "limit": limit}).fetchall()


@dataclasses.dataclass(frozen=True)
class Deleted:
    rows: int
    batches: int
    more: bool  # the last batch was full: older rows may remain for the next run


@dataclasses.dataclass(frozen=True)
class DroppedPartitions:
    dropped: list[str]
    kept: list[str]  # past the retention, but still holding an unfinished operation


def add_operation_partitions(*, ahead_days: int) -> int:
    """Create the missing weekly partitions of ``sync_operations`` up to ``ahead_days`` ahead; how many."""
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["add_operation_partitions"], {"ahead_days": ahead_days}).fetchone()["created"]


def drop_old_operation_partitions(*, days: int) -> DroppedPartitions:
    """Retention of ``sync_operations``: drop whole partitions older than ``days`` (no row-by-row DELETE).

    A partition still holding an unfinished operation is kept whole (the reconciler fails those long
    before any retention), so at most a week more than ``days`` of history is kept."""
    with get_pool().connection() as conn:
        row = conn.execute(QUERIES["drop_old_operation_partitions"], {"days": days}).fetchone()
    return DroppedPartitions(list(row["dropped"]), list(row["kept"]))


@dataclasses.dataclass(frozen=True)
class Compacted:
    hours: int
    minute_rows: int
    more: bool  # stopped at the batch limit: older minute rows may remain for the next run


def compact_rollups(*, keep_minutes_h: int, max_hours: int) -> Compacted:
    """Roll the rollups' minute rows older than ``keep_minutes_h`` hours into hour rows, oldest hour first,
    one hour per transaction, at most ``max_hours`` (idempotent: a moved hour has no minute row left)."""
    hours = rows = 0
    pool = get_pool()
    while hours < max_hours:
        with pool.connection() as conn:
            row = conn.execute(QUERIES["compact_rollup_hour"], {"keep_minutes_h": keep_minutes_h}).fetchone()
        if row is None:
            return Compacted(hours, rows, more=False)
        hours += 1
        rows += row["moved"]
    return Compacted(hours, rows, more=True)


@dataclasses.dataclass(frozen=True)
class CompactedDays:
    days: int
    more: bool  # stopped at the batch limit: more closed days may wait for the next run


def compact_rollup_days(*, max_days: int) -> CompactedDays:
    """Roll the closed UTC days' hour rows up into day rows, oldest first, one day per transaction, at most
    ``max_days`` (each day once: the next day is where the last one ended)."""
    days = 0
    pool = get_pool()
    while days < max_days:
        with pool.connection() as conn:
            if conn.execute(QUERIES["compact_rollup_day"]).fetchone() is None:
                return CompactedDays(days, more=False)
        days += 1
    return CompactedDays(days, more=True)


def trim_rollup_counts(*, keep_counts_h: int) -> int:
    """Drop the per-minute counts of compacted hours older than ``keep_counts_h`` hours; how many rows."""
    with get_pool().connection() as conn:
        return conn.execute(QUERIES["trim_rollup_counts"], {"keep_counts_h": keep_counts_h}).fetchone()["dropped"]


@dataclasses.dataclass(frozen=True)
class UserSpans:
    steps: int  # days moved, over all spans (a rebuild counts as one)
    through: dict[int, str | None]  # span -> its watermark after the run (ISO date), None if never built


def build_user_spans(*, today: dt.datetime | None = None) -> UserSpans:
    """Bring every span of ``sync_rollup_user_since`` up to the last UTC day closed by ``today`` (by
    default, now on PostgreSQL's clock, the one writers go by), one day per transaction (idempotent: the
    watermark moves with the day)."""
    steps = 0
    pool = get_pool()
    params = {"today": today}
    for span in USER_SPANS:
        while True:
            with pool.connection() as conn:
                row = conn.execute(QUERIES["user_span_step"], {**params, "span_days": span}).fetchone()
            if row["through_day"] is None:
                break
            steps += 1
    with pool.connection() as conn:
        rows = conn.execute(QUERIES["user_span_watermarks"]).fetchall()
    return UserSpans(steps, {r["span_days"]: r["through_day"] and r["through_day"].date().isoformat() for r in rows})


def delete_old_ticks(*, days: int, batch: int, max_batches: int) -> Deleted:
    """Delete ``scheduler_ticks`` older than ``days``, ``batch`` rows per transaction, at most ``max_batches``
    transactions."""
    return _delete_in_batches("delete_old_ticks", days=days, batch=batch, max_batches=max_batches)


def _delete_in_batches(query: str, *, days: int, batch: int, max_batches: int) -> Deleted:
    total, batches, last = 0, 0, 0
    pool = get_pool()
    while batches < max_batches:
        with pool.connection() as conn:
            last = conn.execute(QUERIES[query], {"days": days, "batch": batch}).rowcount
        batches += 1
        total += last
        if last < batch:
            break
    return Deleted(total, batches, more=last == batch)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))
