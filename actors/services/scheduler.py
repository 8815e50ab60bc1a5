"""Periodic resyncs and housekeeping, scheduled by periodiq (the Procfile's ``scheduler: periodiq actors.worker``).

Two periodic actors, on their own queue ``periodic``:

- ``resync_stale_wallets`` (``SCHEDULER_CRON``, every minute): requests ``low``
  syncs of the tracked wallets that are stale *now* (see
  ``storage/scheduling.sql``, ``select_stale_wallets``), through
  ``request_syncs`` like any other request (validation, dedup, cooldown).
- ``housekeeping`` (``HOUSEKEEPING_CRON``, every 10 minutes): the tasks of
  :data:`HOUSEKEEPING_TASKS`: partitions of ``sync_operations`` created ahead and
  dropped whole past the retention, rollups compacted and the users page's spans moved after each UTC
  midnight, retention of ``scheduler_ticks``, cleanup of the project's Redis keys, a reconciler pass.

**Exactly once per tick**, however many ``periodiq`` processes run: periodiq
sends a tick with ``actor.send_with_options(scheduled_at=...)``;
:class:`PeriodicActor` first takes ``{namespace}:tick:{actor}:{minute}`` with
``SET NX EX`` and sends only if it got it, so one scheduler wins each tick and
the others log that they lost.  The minute is the tick's minute in UTC, so
schedulers that wake a second apart or run in other time zones agree on it.
The actor side is idempotent too: a tick first claims its ``scheduler_ticks``
row (``PRIMARY KEY (schedule, tick_at)``), and a second delivery does nothing.

**Never skipped silently**: the periodic queue has its own consumer in every
worker and its actors the top priority, so a tick waits at most for one worker
thread to come free, never behind a backlog of syncs.  periodiq's middleware
skips a tick that waited longer than ``actors.constants.PERIODIC_SKIP_DELAY_S``
(raised from its 30 s: a late tick is harmless, since it selects what is stale
when it runs); such a skip is logged as a warning and recorded in
``scheduler_ticks`` (``actors.middleware.periodic_skips``).

The worker (``actors.worker``) declares the two actors, :func:`resync_stale_wallets` and
:func:`housekeeping`, with :class:`PeriodicActor`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import psycopg
import redis
from dramatiq.middleware import CurrentMessage

import settings as settings_module
from storage import scheduling
from storage.scheduling import Staleness

from ..constants import QUEUES
from ..errors import SyncUnavailable
from ..redis_backed.inspection import heartbeats_key, in_flight_key
from ..validation import InvalidSyncRequest, validate_request
from . import context, intake, reconciler

logger = logging.getLogger(__name__)

RESYNC_SCHEDULE = "resync_stale_wallets"
HOUSEKEEPING_SCHEDULE = "housekeeping"
#: Lifetime of a tick's exactly-once key: far longer than schedulers can disagree on a tick.
TICK_KEY_TTL_S = 3600
#: Retention of ticks deletes this many rows per transaction, at most this many transactions per run.
RETENTION_BATCH_SIZE = 5000
RETENTION_MAX_BATCHES = 20
#: How far ahead housekeeping keeps partitions of ``sync_operations`` (three weeks: a stopped scheduler
#: leaves two weeks before an insert finds no partition).
PARTITIONS_AHEAD_DAYS = 21
#: Minute rollups are kept this long, then rolled into hours (every window reads its whole hours as hour
#: rows: few rows to sum); a run moves at most this many hours (a backlog of 30 days is 720: it catches up
#: in one run).
ROLLUP_MINUTES_KEPT_H = 2
ROLLUP_COMPACT_MAX_HOURS = 1000
#: The per-minute counts of compacted hours are kept this long: the 24 h range's 15-minute bars (and the
#: 6 h range's 5-minute ones) read them, with an hour's margin for the compaction's lag.
ROLLUP_COUNTS_KEPT_H = 26
#: Closed days rolled up from hours per run (a backlog of 30 days catches up in one run).
ROLLUP_COMPACT_MAX_DAYS = 60
#: Producer/worker ids in Dramatiq's heartbeat set silent this long, with nothing in flight, are removed.
HEARTBEAT_RETENTION_MS = 86_400_000
#: SCAN calls (of ~1,000 keys each) per housekeeping run; the walk resumes where it stopped next run.
REDIS_SCAN_CALLS = 100


# ---------------------------------------------------------------------------------------- ticks --

def tick_minute(scheduled_at: str) -> dt.datetime:
    """The tick a periodiq ``scheduled_at`` (ISO 8601, any offset) belongs to: its minute, in UTC."""
    when = dt.datetime.fromisoformat(scheduled_at.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).replace(second=0, microsecond=0)


#: The option carrying when a tick was sent, in ms on Redis's clock (``actors.middleware.periodic_ticks``).
SENT_AT_OPTION = "sent_at_redis_ms"


def tick_key(namespace: str, actor_name: str, tick_at: dt.datetime) -> str:
    return f"{namespace}:tick:{actor_name}:{tick_at.strftime('%Y-%m-%dT%H:%MZ')}"


class PeriodicActor(dramatiq.Actor):
    """An actor whose periodic sends (periodiq's, with ``scheduled_at``) are enqueued once per tick
    across every scheduler process: the first to take the tick's key in Redis sends it."""

    def send_with_options(self, *, args=(), kwargs=None, delay=None, **options):
        scheduled_at = options.get("scheduled_at")
        if scheduled_at is None:  # sent by hand: no tick to deduplicate
            return super().send_with_options(args=args, kwargs=kwargs, delay=delay, **options)
        tick_at = tick_minute(str(scheduled_at))
        me = context.worker_id()
        key = tick_key(self.broker.namespace, self.actor_name, tick_at)
        try:
            if not self.broker.client.set(key, me, nx=True, ex=TICK_KEY_TTL_S):
                holder = self.broker.client.get(key)
                logger.info("Tick %s of %s: lost to scheduler %s; this scheduler (%s) sends nothing.",
                            f"{tick_at:%H:%M}Z", self.actor_name, holder.decode() if holder else "?", me)
                return None
            message = super().send_with_options(args=args, kwargs=kwargs, delay=delay, tick_at=tick_at.isoformat(),
                                                scheduler_id=me, **{SENT_AT_OPTION: self.broker.clock.now_ms()},
                                                **options)
        except redis.RedisError as exc:
            # The scheduler keeps running; the next tick selects whatever is stale by then.
            logger.error("Tick %s of %s not sent: Redis did not answer (%s).", f"{tick_at:%H:%M}Z", self.actor_name,
                         context.cfg().redact(str(exc)))
            return None
        logger.info("Tick %s of %s: won by this scheduler (%s); enqueued.", f"{tick_at:%H:%M}Z", self.actor_name, me)
        return message


def tick_of(message) -> tuple[dt.datetime, str | None]:
    """The tick a message carries, and the scheduler that sent it; a message sent by hand is its own tick."""
    options = message.options if message is not None else {}
    if options.get("tick_at"):
        return dt.datetime.fromisoformat(options["tick_at"]), options.get("scheduler_id")
    if options.get("scheduled_at"):
        return tick_minute(str(options["scheduled_at"])), options.get("scheduler_id")
    return dt.datetime.now(dt.timezone.utc), None


# ------------------------------------------------------------------------------ resync ticks --

@dataclasses.dataclass(frozen=True)
class TickPolicy:
    """What a resync tick selects and how much it may request (see the ``SCHEDULER_*`` settings)."""

    staleness: Staleness
    batch_size: int
    max_per_tick: int
    backlog_limit: int

    @classmethod
    def from_settings(cls, cfg: settings_module.Settings) -> "TickPolicy":
        return cls(
            staleness=Staleness(
                active_window_s=cfg.scheduler.active_window_s, active_interval_s=cfg.scheduler.active_interval_s,
                idle_interval_s=cfg.scheduler.idle_interval_s, backoff_base_s=cfg.scheduler.backoff_base_s,
                backoff_cap_s=cfg.scheduler.backoff_cap_s,
                # An operation is in flight as long as its Redis in-flight key can live.
                inflight_window_s=context.admissions().inflight_ttl_ms // 1000),
            batch_size=cfg.scheduler.batch_size, max_per_tick=cfg.scheduler.max_per_tick,
            backlog_limit=cfg.scheduler.backlog_limit)

    def describe(self) -> dict[str, int]:
        return {**self.staleness.params(), "batch_size": self.batch_size, "max_per_tick": self.max_per_tick,
                "backlog_limit": self.backlog_limit}


@dataclasses.dataclass(frozen=True)
class TickReport:
    """What one resync tick did (also recorded in ``scheduler_ticks``)."""

    tick_at: dt.datetime
    stale_count: int  # stale wallets that could be requested (not in flight, not backing off)
    requested_count: int  # new syncs enqueued
    held_back_count: int  # stale_count - requested_count
    backlog: int  # the low backlog when the tick started
    details: dict[str, Any]

    @property
    def reason(self) -> str:
        return self.details["reason"]


def low_backlog(client: redis.Redis, namespace: str) -> int:
    """Messages waiting in the ``low`` queue and in its delay queue (retries)."""
    queue = f"{namespace}:{QUEUES['low'][0]}"
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.llen(f"{queue}.DQ")
    return sum(pipe.execute())


def run_resync_tick(tick_at: dt.datetime, *, scheduler_id: str | None = None,
                    policy: TickPolicy | None = None) -> TickReport | None:
    """Run the resync tick ``tick_at``: request ``low`` syncs of what is stale now, in batches, within the
    backlog limit; record what it did.  ``None`` if this tick ran already (a second delivery)."""
    cfg = context.cfg()
    policy = policy or TickPolicy.from_settings(cfg)
    started_at = scheduling.claim_tick(RESYNC_SCHEDULE, tick_at, scheduler_id=scheduler_id,
                                       details={"policy": policy.describe()})
    if started_at is None:
        logger.info("Tick %s of %s ran already; this delivery does nothing.", tick_at.isoformat(), RESYNC_SCHEDULE)
        return None

    client = context.broker().client
    counts: collections.Counter = collections.Counter()
    stale = requested = backlog = 0
    details: dict[str, Any] = {}
    try:
        backlog = low_backlog(client, cfg.sync.namespace)
        room = max(0, policy.backlog_limit - backlog)
        budget = min(policy.max_per_tick, room)
        clock = time.perf_counter()
        selection = scheduling.select_stale_wallets(policy.staleness, limit=budget)
        details["select_ms"] = round((time.perf_counter() - clock) * 1000, 1)
        stale = selection.stale_count
        limited_by = None
        if stale > budget:
            limited_by = "backlog" if room < policy.max_per_tick else "max_per_tick"
        details.update(budget=budget, in_flight=selection.in_flight_count,
                       backing_off=selection.backing_off_count)

        clock = time.perf_counter()
        pending = collections.deque(selection.wallets)
        while pending:
            if counts["batches"]:  # the backlog moved since: workers drained it, producers added to it
                room = policy.backlog_limit - low_backlog(client, cfg.sync.namespace)
            size = min(policy.batch_size, policy.max_per_tick - requested, room)
            if size <= 0:
                limited_by = "backlog" if room <= 0 else "max_per_tick"
                break
            chunk = [pending.popleft() for _ in range(min(size, len(pending)))]
            requests = [r for r in (_request_for(w, cfg.sync.chains, counts) for w in chunk) if r is not None]
            if not requests:
                continue
            ids = intake.request_syncs(requests)
            created = scheduling.count_new_scheduled_operations(ids, since=started_at)
            requested += created
            room -= created
            counts["batches"] += 1
            counts["not_accepted"] += len(requests) - created  # deduplicated or in cooldown after all
        details["enqueue_ms"] = round((time.perf_counter() - clock) * 1000, 1)
        details["backlog_after"] = low_backlog(client, cfg.sync.namespace)
        details["reason"] = _reason(stale, requested, limited_by)
    except SyncUnavailable as exc:
        details["reason"] = "unavailable"
        details["error"] = str(exc)
        logger.error("Tick %s of %s stopped: %s", tick_at.isoformat(), RESYNC_SCHEDULE, exc)
    except Exception as exc:
        details["reason"] = "error"
        details["error"] = cfg.redact(f"{type(exc).__name__}: {exc}")[:1000]
        _finish_quietly(tick_at, stale, requested, backlog, {**details, **counts})
        raise
    details.update(counts)
    report = TickReport(tick_at, stale, requested, max(0, stale - requested), backlog, details)
    scheduling.finish_tick(RESYNC_SCHEDULE, tick_at, stale_count=stale, requested_count=requested,
                           held_back_count=report.held_back_count, backlog=backlog, details=details)
    logger.info("Tick %s of %s: %d stale, %d requested, %d held back (%s); low backlog %d -> %s; "
                "select %s ms, enqueue %s ms.", f"{tick_at:%H:%M}Z", RESYNC_SCHEDULE, stale, requested,
                report.held_back_count, details["reason"], backlog, details.get("backlog_after"),
                details.get("select_ms"), details.get("enqueue_ms"))
    return report


def _request_for(wallet: scheduling.StaleWallet, supported: tuple[int, ...],
                 counts: collections.Counter) -> dict | None:
    """The ``request_syncs`` entry of a stale wallet, or ``None`` (counted) if it cannot be requested:
    one invalid entry would reject its whole batch."""
    chains = [c for c in wallet.chain_ids if c in supported]
    if not chains:
        counts["no_supported_chain"] += 1
        return None
    try:
        r = validate_request(wallet.user_id, wallet.wallet_address, chains, priority="low", trigger="scheduled",
                             supported_chains=supported)
    except InvalidSyncRequest:
        counts["invalid"] += 1
        return None
    return {"user_id": r.user_id, "wallet_address": r.wallet_address, "chain_ids": list(r.chain_ids),
            "priority": "low", "trigger": "scheduled"}


def _reason(stale: int, requested: int, limited_by: str | None) -> str:
    if stale == 0:
        return "nothing_stale"
    if requested >= stale:
        return "all_requested"
    if limited_by == "backlog":
        return "backlog_full" if requested == 0 else "backlog_limit"
    if limited_by == "max_per_tick":
        return "max_per_tick"
    return "not_accepted"  # deduplicated, in cooldown or invalid


def _finish_quietly(tick_at, stale, requested, backlog, details) -> None:
    try:
        scheduling.finish_tick(RESYNC_SCHEDULE, tick_at, stale_count=stale, requested_count=requested,
                               held_back_count=max(0, stale - requested), backlog=backlog, details=details)
    except psycopg.Error:
        pass  # the row keeps finished_at null: the tick is visibly unfinished


# ------------------------------------------------------------------------------ housekeeping --

@dataclasses.dataclass(frozen=True)
class HousekeepingTask:
    name: str
    run: Callable[[], dict[str, Any]]


#: What a housekeeping run does, in order; each task's result (or error) is recorded in its
#: ``scheduler_ticks`` row, and one task failing does not stop the others.  Append to add one.
HOUSEKEEPING_TASKS: list[HousekeepingTask] = []


def housekeeping_task(name: str):
    """Decorator: append the function to :data:`HOUSEKEEPING_TASKS` under ``name``."""

    def register(fn: Callable[[], dict[str, Any]]):
        HOUSEKEEPING_TASKS.append(HousekeepingTask(name, fn))
        return fn

    return register


@housekeeping_task("sync_operations_partitions")
def add_sync_operation_partitions() -> dict[str, Any]:
    """The weekly partitions of ``sync_operations`` for the next weeks, so an insert always has one."""
    return {"created": scheduling.add_operation_partitions(ahead_days=PARTITIONS_AHEAD_DAYS)}


@housekeeping_task("sync_operations_retention")
def prune_sync_operations() -> dict[str, Any]:
    """Partitions of ``sync_operations`` wholly older than ``SYNC_RETENTION_DAYS``, dropped whole."""
    return dataclasses.asdict(scheduling.drop_old_operation_partitions(
        days=context.cfg().housekeeping.sync_retention_days))


@housekeeping_task("sync_rollups_compaction")
def compact_sync_rollups() -> dict[str, Any]:
    """Minute rollups older than two hours rolled into hour rows, so a long window reads hours; the
    per-minute counts of the short ranges' bars kept a day."""
    compacted = scheduling.compact_rollups(keep_minutes_h=ROLLUP_MINUTES_KEPT_H, max_hours=ROLLUP_COMPACT_MAX_HOURS)
    return {**dataclasses.asdict(compacted),
            "counts_dropped": scheduling.trim_rollup_counts(keep_counts_h=ROLLUP_COUNTS_KEPT_H)}


@housekeeping_task("sync_rollups_days")
def compact_sync_rollup_days() -> dict[str, Any]:
    """Closed UTC days rolled up from their hour rows (after the hours' compaction), so a long window
    reads days."""
    return dataclasses.asdict(scheduling.compact_rollup_days(max_days=ROLLUP_COMPACT_MAX_DAYS))


@housekeeping_task("sync_rollups_user_spans")
def build_user_spans() -> dict[str, Any]:
    """The users page's trailing spans moved to the last closed UTC day (a no-op until the next midnight)."""
    return dataclasses.asdict(scheduling.build_user_spans())


@housekeeping_task("scheduler_ticks_retention")
def prune_scheduler_ticks() -> dict[str, Any]:
    deleted = scheduling.delete_old_ticks(days=context.cfg().housekeeping.tick_retention_days,
                                          batch=RETENTION_BATCH_SIZE, max_batches=RETENTION_MAX_BATCHES)
    return dataclasses.asdict(deleted)


@housekeeping_task("redis_cleanup")
def clean_redis() -> dict[str, Any]:
    """See :func:`clean_redis_keys`."""
    cfg = context.cfg()
    broker = context.broker()
    families = {
        "sync:inflight": context.admissions().inflight_ttl_ms // 1000,
        "sync:recent": max(1, cfg.sync.cooldown_seconds),
        "price": cfg.prices.cache_ttl_s,
        "tick": TICK_KEY_TTL_S,
    }
    queues = broker.get_declared_queues() | broker.get_declared_delay_queues()
    return clean_redis_keys(broker.client, cfg.sync.namespace, queues=queues, ttl_families=families)


@housekeeping_task("reconcile")
def reconcile_pass() -> dict[str, Any]:
    """A pass of the reliability reconciler (which also runs every RECONCILE_INTERVAL_S in the workers;
    the reconciler's lock keeps two passes from running at once)."""
    done = reconciler.reconcile_exclusively()
    return {"skipped": "another reconciler pass was running"} if done is None else dict(done)


def clean_redis_keys(client: redis.Redis, namespace: str, *, queues: set[str], ttl_families: dict[str, int],
                     scan_calls: int = REDIS_SCAN_CALLS, heartbeat_retention_ms: int = HEARTBEAT_RETENTION_MS
                     ) -> dict[str, Any]:
    """Remove what the project left in Redis that has outlived its purpose:

    - ids in Dramatiq's ``{namespace}:__heartbeats__`` silent for ``heartbeat_retention_ms`` with no
      message in flight on any of ``queues``: every process that ever enqueued (producers, schedulers,
      test runs) adds one there, and Dramatiq only prunes them in its random maintenance passes;
    - keys of a family that must expire (``{namespace}:{family}:...``, e.g. the in-flight and cooldown
      keys) found without a TTL, left by hand or by an old release: they get the family's lifetime
      back (``EXPIRE ... NX``), so none can block a wallet forever.  The keyspace is walked with SCAN,
      ``scan_calls`` calls per run, resuming where the previous run stopped.

    Keys with a TTL expire by themselves and are not touched; nothing outside ``namespace`` is.
    """
    result: dict[str, Any] = {}
    heartbeats = heartbeats_key(namespace)
    cutoff = int(time.time() * 1000) - heartbeat_retention_ms
    silent = [w.decode() for w in client.zrangebyscore(heartbeats, 0, cutoff, start=0, num=1000)]
    if silent:
        ordered = sorted(queues)
        pipe = client.pipeline(transaction=False)
        for worker in silent:
            pipe.exists(*[in_flight_key(namespace, worker, q) for q in ordered])
        gone = [w for w, held in zip(silent, pipe.execute()) if not held]
        if gone:
            client.zrem(heartbeats, *gone)
        result["heartbeats_removed"] = len(gone)
    else:
        result["heartbeats_removed"] = 0

    prefixes = {f"{namespace}:{family}:".encode(): ttl for family, ttl in ttl_families.items()}
    cursor_key = f"{namespace}:housekeeping:scan_cursor"
    cursor = int(client.get(cursor_key) or 0)
    examined = repaired = 0
    for _ in range(scan_calls):
        cursor, keys = client.scan(cursor, match=f"{namespace}:*", count=1000)
        examined += len(keys)
        owned = [(k, ttl) for k in keys for prefix, ttl in prefixes.items() if k.startswith(prefix)]
        if owned:
            pipe = client.pipeline(transaction=False)
            for key, _ttl in owned:
                pipe.ttl(key)
            lacking = [(k, ttl) for (k, ttl), current in zip(owned, pipe.execute()) if current == -1]
            if lacking:
                pipe = client.pipeline(transaction=False)
                for key, ttl in lacking:
                    pipe.expire(key, ttl, nx=True)
                repaired += sum(1 for done in pipe.execute() if done)
        if cursor == 0:
            break
    client.set(cursor_key, cursor, ex=86400)
    result.update(keys_examined=examined, ttl_restored=repaired, scan_complete=cursor == 0)
    return result


def run_housekeeping(tick_at: dt.datetime, *, scheduler_id: str | None = None,
                     tasks: list[HousekeepingTask] | None = None) -> dict[str, Any] | None:
    """Run every housekeeping task once for the tick ``tick_at``: what each did, or ``None`` if this tick
    ran already."""
    tasks = HOUSEKEEPING_TASKS if tasks is None else tasks
    if scheduling.claim_tick(HOUSEKEEPING_SCHEDULE, tick_at, scheduler_id=scheduler_id,
                             details={"tasks": [t.name for t in tasks]}) is None:
        logger.info("Tick %s of %s ran already; this delivery does nothing.", tick_at.isoformat(),
                    HOUSEKEEPING_SCHEDULE)
        return None
    results: dict[str, Any] = {}
    for task in tasks:
        clock = time.perf_counter()
        try:
            outcome = dict(task.run())
        except Exception as exc:  # one task failing must not stop the others
            logger.exception("Housekeeping task %s failed.", task.name)
            outcome = {"error": context.cfg().redact(f"{type(exc).__name__}: {exc}")[:1000]}
        outcome["ms"] = round((time.perf_counter() - clock) * 1000, 1)
        results[task.name] = outcome
    scheduling.finish_tick(HOUSEKEEPING_SCHEDULE, tick_at, details={"results": results})
    logger.info("Housekeeping %s: %s", tick_at.isoformat(), results)
    return results


# ---------------------------------------------------------------------------- the actors --

def resync_stale_wallets() -> None:
    """The periodic resync tick (see :func:`run_resync_tick`)."""
    tick_at, scheduler_id = tick_of(CurrentMessage.get_current_message())
    run_resync_tick(tick_at, scheduler_id=scheduler_id)


def housekeeping() -> None:
    """The periodic housekeeping run (see :data:`HOUSEKEEPING_TASKS`)."""
    tick_at, scheduler_id = tick_of(CurrentMessage.get_current_message())
    run_housekeeping(tick_at, scheduler_id=scheduler_id)


def wallet_health(*, user_id: str | None = None, state: str | None = None, limit: int = 100) -> list[dict]:
    """Tracked wallets with their tier, state (``paused``, ``in_flight``, ``backing_off``, ``stale``,
    ``fresh``), consecutive failures and next due time, under the configured rules."""
    return scheduling.wallet_health(TickPolicy.from_settings(context.cfg()).staleness, user_id=user_id,
                                    state=state, limit=limit)


def wallet_health_counts() -> list[dict]:
    """How many tracked wallets are in each state and tier."""
    return scheduling.wallet_health_counts(TickPolicy.from_settings(context.cfg()).staleness)
