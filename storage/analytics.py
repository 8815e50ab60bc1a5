"""The dashboard's reads: aggregated in PostgreSQL (``dashboard.sql``), returned as DataFrames.

Every function runs one or two named statements on the read-only pool
(:func:`storage.pool.get_readonly_pool`: ``default_transaction_read_only``,
its own statement timeout) and turns the rows, which are already aggregates
or one page of results, into a :class:`pandas.DataFrame` with plain dtypes:
numbers as floats or ints (never ``Decimal``), times as UTC timestamps.
Nothing here pulls raw rows in order to aggregate them in Python.

Inputs from a page only ever travel as bound parameters; a sort key is
checked against :data:`USER_SORTS` before it is sent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pandas as pd
from psycopg.rows import tuple_row

from .pool import get_readonly_pool
from .queries import QUERIES

#: Bin edges (ms) of the duration histogram; the last bin is open-ended.  Powers of two: each is an
#: edge of the rollups' latency histogram bins (four a doubling), so the counts read off them are exact.
DURATION_EDGES = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
#: Statuses in the order the dashboard shows them.
STATUSES = ("succeeded", "partial", "failed", "retrying", "running", "queued")
#: Columns the users table may be sorted by, server-side.
USER_SORTS = ("user_id", "syncs", "succeeded", "failed", "success_rate", "last_sync_at", "avg_duration_ms",
              "p95_duration_ms", "portfolio_value_usd", "wallets")
#: Of those, the ones that order the page of users shown (most syncs first), not all users: neither has a
#: per-user rollup (a p95 needs each user's operations of the window, a value all their holdings).
PAGE_SORTS = ("p95_duration_ms", "portfolio_value_usd")


@dataclasses.dataclass(frozen=True)
class Window:
    """A half-open time range ``[start, end)`` on ``enqueued_at``, and the bucket of its time series."""

    start: dt.datetime
    end: dt.datetime
    bucket: dt.timedelta

    def params(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "bucket": self.bucket}

    @property
    def span(self) -> dt.timedelta:
        return self.end - self.start


@dataclasses.dataclass(frozen=True)
class OperationSearch:
    """What the operations page searches for; empty fields match everything."""

    operation_id: str | None = None
    user_id: str | None = None
    wallet: str | None = None
    statuses: tuple[str, ...] = ()
    error_text: str | None = None


def _frame(name: str, params: dict[str, Any]) -> pd.DataFrame:
    with get_readonly_pool().connection() as conn:
        cur = conn.cursor(row_factory=tuple_row)
        cur.execute(QUERIES[name], params)
        rows = cur.fetchall()
        columns = [c.name for c in cur.description]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    return _plain(frame)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Decimals become floats; everything else keeps the type psycopg gave it."""
    for column in frame.columns:
        if frame[column].dtype == object and len(frame) and any(isinstance(v, Decimal) for v in frame[column]):
            frame[column] = pd.to_numeric(frame[column].map(lambda v: None if v is None else float(v)),
                                          errors="coerce").astype("float64")
    return frame


def _like_pattern(text: str) -> str:
    """``text`` as a substring pattern for ILIKE, its wildcards taken literally."""
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


# ------------------------------------------------------------------------------------ overview --

def kpis(window: Window) -> pd.DataFrame:
    """One row: syncs, succeeded, partial, failed, active, success_rate, duration_p50_ms, duration_p95_ms,
    queue_wait_p95_ms."""
    frame = _frame("dash_kpis", window.params())
    row = frame.iloc[0]
    durations = row["duration_ms"] or [None, None]
    # A partial sync is finished but no success: it counts against the success rate.
    finished = int(row["succeeded"]) + int(row["partial"]) + int(row["failed"])
    return pd.DataFrame([{
        "syncs": int(row["syncs"]), "succeeded": int(row["succeeded"]), "partial": int(row["partial"]),
        "failed": int(row["failed"]), "active": int(row["active"]),
        "success_rate": row["succeeded"] / finished if finished else float("nan"),
        "duration_p50_ms": _float(durations[0]), "duration_p95_ms": _float(durations[1]),
        "queue_wait_p95_ms": _float(row["queue_wait_p95_ms"]),
    }])


def wallets_synced(window: Window) -> pd.DataFrame:
    """One row: wallets_synced (distinct user and wallet with a success in the window), users_synced."""
    return _frame("dash_wallets_synced", window.params()).astype("int64")


def throughput(window: Window) -> pd.DataFrame:
    """bucket (UTC), status, syncs: every bucket of the window and every status, zeros included."""
    frame = _frame("dash_throughput", window.params())
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    frame["syncs"] = frame["syncs"].astype("int64")
    return frame


def duration_histogram(window: Window) -> pd.DataFrame:
    """bin, lower_ms, upper_ms (None for the last, open bin), label, status, syncs."""
    frame = _frame("dash_duration_histogram", {**window.params(), "edges": list(DURATION_EDGES)})
    bins = frame["bin"].astype("int64") if len(frame) else pd.Series([], dtype="int64")
    frame["lower_ms"] = [DURATION_EDGES[b - 1] if b >= 1 else 0 for b in bins]
    frame["upper_ms"] = [DURATION_EDGES[b] if b < len(DURATION_EDGES) else None for b in bins]
    frame["label"] = [duration_label(b) for b in bins]
    frame["syncs"] = frame["syncs"].astype("int64")
    return frame[["bin", "lower_ms", "upper_ms", "label", "status", "syncs"]]


def duration_label(bin_number: int) -> str:
    """The label of a bin of :data:`DURATION_EDGES` (``width_bucket`` numbering): ``32–64 ms``, ``1.024–2.048 s``."""
    if bin_number >= len(DURATION_EDGES):
        return f"≥ {_seconds(DURATION_EDGES[-1])} s"
    low = DURATION_EDGES[bin_number - 1] if bin_number >= 1 else 0
    high = DURATION_EDGES[bin_number]
    if high <= 1024:
        return f"{low}–{high} ms"
    return f"{_seconds(low)}–{_seconds(high)} s"


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}"


def failures_by_error(window: Window) -> pd.DataFrame:
    """error_code, failures, users, last_seen; most frequent first."""
    frame = _frame("dash_failures_by_error", window.params())
    frame["last_seen"] = pd.to_datetime(frame["last_seen"], utc=True)
    return frame


def by_trigger_priority(window: Window) -> pd.DataFrame:
    """trigger, priority, syncs, succeeded, failed, queue_wait_p50_ms, queue_wait_p95_ms."""
    return _frame("dash_by_trigger_priority", window.params())


def chains(window: Window) -> pd.DataFrame:
    """chain_id, reads, ok, errors, success_rate, latency_p50_ms, latency_p95_ms, top_error.

    Every chain read of the window's final operations, from the rollups (latency percentiles read
    off their histograms).
    """
    frame = _frame("dash_chains", window.params())
    finished = frame["ok"] + frame["errors"] if len(frame) else pd.Series([], dtype="float64")
    frame["success_rate"] = (frame["ok"] / finished.where(finished > 0)).astype("float64")
    return frame


# --------------------------------------------------------------------------------------- users --

def users_window(window: Window) -> Window:
    """The window the users page shows for ``window``: a window of a day or more becomes the same number
    of closed UTC days before today and today so far (what its per-user rollup, sync_rollup_user_since,
    holds at a cost flat in history); a shorter one is kept as it is."""
    days = window.span // dt.timedelta(days=1)
    if days < 1:
        return window
    today = _utc_day(window.end - dt.timedelta(microseconds=1))
    return Window(start=today - dt.timedelta(days=days), end=window.end, bucket=window.bucket)


def users(window: Window, *, user_filter: str | None = None, min_syncs: int = 0,
          max_success_rate: float | None = None, failed_only: bool = False, sort: str = "syncs",
          descending: bool = True, limit: int = 25, offset: int = 0) -> tuple[pd.DataFrame, int]:
    """One page of per-user statistics over :func:`users_window` of ``window`` and the number of users
    matching.

    A sort in :data:`PAGE_SORTS` orders the page the default order (most syncs first) gives, not all
    users (docs/capacity.md, the users page).

    Columns: user_id, syncs, succeeded, failed, success_rate, last_sync_at, last_status,
    last_error_code, avg_duration_ms, p95_duration_ms, portfolio_value_usd, unpriced_holdings, wallets.
    """
    if sort not in USER_SORTS:
        raise ValueError(f"cannot sort users by {sort!r}")
    days = window.span // dt.timedelta(days=1)  # 0: a window under a day, read raw
    window = users_window(window)
    on_page = sort in PAGE_SORTS
    params = {
        **window.params(), "days": days, "today": window.start + dt.timedelta(days=days),
        "user_pattern": _like_pattern(user_filter) if user_filter else None,
        "min_syncs": max(0, int(min_syncs)), "max_success_rate": max_success_rate, "failed_only": bool(failed_only),
        "sort": "syncs" if on_page else sort, "descending": True if on_page else bool(descending),
        "limit": max(1, min(int(limit), 500)), "offset": max(0, int(offset)),
    }
    page = _frame("dash_users", params)
    total = int(page["total"].iloc[0]) if len(page) else 0
    page = page.drop(columns=["total"])
    if not len(page):
        for column in ("last_status", "last_error_code", "p95_duration_ms", "portfolio_value_usd",
                       "unpriced_holdings", "wallets"):
            page[column] = pd.Series([], dtype="object")
        return page, total
    details = _frame("dash_user_details", {**window.params(), "user_ids": list(page["user_id"])})
    page = page.drop(columns=["last_sync_at"]).merge(details, on="user_id", how="left")
    page["last_sync_at"] = pd.to_datetime(page["last_sync_at"], utc=True)
    if on_page:
        # A float key orders the page; the column itself keeps its exact Decimal values.
        page = page.assign(sort_key=page[sort].astype("float64")).sort_values(
            ["sort_key", "user_id"], ascending=[not descending, True], na_position="last", ignore_index=True,
            kind="stable").drop(columns=["sort_key"])
    columns = ["user_id", "syncs", "succeeded", "failed", "success_rate", "last_sync_at", "last_status",
               "last_error_code", "avg_duration_ms", "p95_duration_ms", "portfolio_value_usd", "unpriced_holdings",
               "wallets"]
    return page[columns], total


def _utc_day(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def user_summary(window: Window, user_id: str) -> pd.DataFrame:
    """One row: syncs, succeeded, partial, failed, success_rate, last_sync_at, duration_p50_ms, duration_p95_ms,
    wallets, portfolio_value_usd."""
    row = _frame("dash_user_summary", {**window.params(), "user_id": user_id}).iloc[0]
    durations = row["duration_ms"] or [None, None]
    finished = int(row["succeeded"]) + int(row["partial"]) + int(row["failed"])
    return pd.DataFrame([{
        "syncs": int(row["syncs"]), "succeeded": int(row["succeeded"]), "partial": int(row["partial"]),
        "failed": int(row["failed"]), "success_rate": row["succeeded"] / finished if finished else float("nan"),
        "last_sync_at": row["last_sync_at"], "duration_p50_ms": _float(durations[0]),
        "duration_p95_ms": _float(durations[1]), "wallets": int(row["wallets"]),
        "portfolio_value_usd": _float(row["portfolio_value_usd"]),
    }])


def user_timeline(window: Window, user_id: str, *, limit: int = 2000) -> pd.DataFrame:
    """The user's operations of the window, newest first (at most ``limit``)."""
    frame = _frame("dash_user_timeline", {**window.params(), "user_id": user_id, "limit": limit})
    frame["enqueued_at"] = pd.to_datetime(frame["enqueued_at"], utc=True)
    return frame


def user_values(window: Window, user_id: str, *, limit: int = 5000) -> pd.DataFrame:
    """at, wallet_address, total_value_usd of each successful sync of the window (at most ``limit``)."""
    frame = _frame("dash_user_values", {**window.params(), "user_id": user_id, "limit": limit})
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    frame["total_value_usd"] = frame["total_value_usd"].astype("float64")
    return frame.sort_values("at", ignore_index=True)


def user_holdings(user_id: str) -> pd.DataFrame:
    """chain_id, symbol, name, token_address, wallets, balance, price_usd, value_usd, unpriced, as_of, provider."""
    frame = _frame("dash_user_holdings", {"user_id": user_id})
    for column in ("balance", "price_usd", "value_usd"):
        frame[column] = frame[column].astype("float64")
    return frame


# ---------------------------------------------------------------------------------- operations --

#: How far a search counts its matches: a total above it is reported as ``SEARCH_COUNT_LIMIT + 1``
#: ("more than ..."), and pages go as far as it.
SEARCH_COUNT_LIMIT = 10_000


def search_operations(window: Window, search: OperationSearch, *, limit: int = 25,
                      offset: int = 0) -> tuple[pd.DataFrame, int]:
    """One page of the operations matching ``search`` (newest first) and how many match, counted up to
    :data:`SEARCH_COUNT_LIMIT` + 1."""
    params = {
        **window.params(),
        "operation_id": parse_uuid(search.operation_id) if search.operation_id else None,
        "user_id": search.user_id or None, "wallet": search.wallet.lower() if search.wallet else None,
        "statuses": list(search.statuses) or None,
        "error_pattern": _like_pattern(search.error_text) if search.error_text else None,
    }
    if search.operation_id and params["operation_id"] is None:
        return _frame("dash_operations_search", {**params, "operation_id": None, "limit": 0, "offset": 0}), 0
    total = int(_frame("dash_operations_count", {**params, "count_limit": SEARCH_COUNT_LIMIT})["total"].iloc[0])
    limit, offset = max(1, min(int(limit), 500)), max(0, int(offset))
    if params["error_pattern"] is None or params["operation_id"] is not None:  # an id is searched in all time
        return _frame("dash_operations_search", {**params, "limit": limit, "offset": offset}), total
    # Newest partition first, until the page is full (dash_window_partitions says why).
    parts: list[pd.DataFrame] = []
    wanted = offset + limit
    for part in _frame("dash_window_partitions", window.params()).to_dict("records"):
        found = _frame("dash_operations_search", {**params, "start": part["start"], "end": part["end"],
                                                  "limit": wanted, "offset": 0})
        parts.append(found)
        wanted -= len(found)
        if wanted <= 0:
            break
    if not parts:
        return _frame("dash_operations_search", {**params, "limit": 0, "offset": 0}), total
    page = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return page.iloc[offset:offset + limit].reset_index(drop=True), total


def operation(operation_id: str) -> dict | None:
    """One operation's full record, or ``None``."""
    op_id = parse_uuid(operation_id)
    if op_id is None:
        return None
    frame = _frame("dash_operation", {"operation_id": op_id})
    return None if frame.empty else frame.iloc[0].to_dict()


def operations_by_ids(operation_ids: Sequence[str]) -> dict[str, dict]:
    """The audit rows of ``operation_ids`` (unknown or malformed ids are left out), by id."""
    ids = [i for i in (parse_uuid(o) for o in operation_ids) if i]
    if not ids:
        return {}
    frame = _frame("dash_operations_by_ids", {"operation_ids": ids})
    return {row["operation_id"]: row for row in frame.to_dict("records")}


def parse_uuid(text: str | None) -> str | None:
    try:
        return str(uuid.UUID(str(text).strip()))
    except (ValueError, TypeError, AttributeError):
        return None


# ---------------------------------------------------------------------------------- queues page --

def active_operations() -> pd.DataFrame:
    """status, operations, oldest_enqueued_at, oldest_started_at of the operations not final."""
    return _frame("dash_active_operations", {})


def in_flight(*, limit: int = 50) -> pd.DataFrame:
    """The running and retrying operations, longest running first."""
    return _frame("dash_in_flight", {"limit": limit})


def scheduler_ticks(*, limit: int = 20) -> pd.DataFrame:
    """The latest scheduler ticks (empty if no scheduler ever ran)."""
    return _frame("dash_scheduler_ticks", {"limit": limit})


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)
