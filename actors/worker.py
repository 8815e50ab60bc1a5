"""The worker: the composition root that ``dramatiq actors.worker`` and ``periodiq actors.worker`` load.

Importing it configures the process from the environment (see ``settings``; a bad variable
fails at once with :class:`settings.ConfigError` naming it), installs the logging, builds the
broker with its middleware, sets it as Dramatiq's, then declares the actors on it:

- the sync actors, one per priority (``actors.constants.QUEUES``), all running
  ``actors.services.lifecycle.sync_portfolio``;
- the periodic actors of ``actors.services.scheduler``, on their own queue.

periodiq requires its middleware on the broker before any actor is declared, hence this order.
Nothing in the package imports this module: a producer imports ``actors``.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import AgeLimit, CurrentMessage, Middleware, Retries, ShutdownNotifications, TimeLimit
import pendulum
from periodiq import cron

import settings as settings_module
from storage import operations

from . import logs
from .constants import PERIODIC_QUEUE, PERIODIC_SKIP_DELAY_S, QUEUES, actor_name
from .middleware.endpoint_check import EndpointCheck
from .middleware.job_log_context import JobLogContext
from .middleware.message_guard import MessageGuard
from .middleware.periodic_skips import PeriodicSkips
from .middleware.periodic_ticks import PeriodicTicks
from .middleware.process_guard import WorkerProcessGuard
from .middleware.reconciler_thread import ReconcilerThread
from .middleware.retries import make_retry_when
from .middleware.track_retries import TrackRetries
from .middleware.worker_metrics import WorkerMetrics
from .redis_backed.broker import SyncBroker, connect
from .services import context, lifecycle, observe, scheduler


def build_middleware(cfg: settings_module.Settings) -> list[Middleware]:
    """The worker's middleware, in the order Dramatiq runs their before-hooks."""
    return [
        JobLogContext(),  # first: every middleware's log lines of a job carry its ids
        *([WorkerMetrics()] if cfg.metrics.enabled else []),
        WorkerProcessGuard(),
        AgeLimit(max_age=cfg.sync.max_age_ms),
        ShutdownNotifications(),
        Retries(max_retries=cfg.sync.max_attempts - 1, min_backoff=cfg.sync.retry_min_backoff_ms,
                max_backoff=cfg.sync.retry_max_backoff_ms,
                retry_when=make_retry_when(cfg.sync.max_attempts, cfg.sync.infra_max_retries)),
        CurrentMessage(),
        PeriodicTicks(skip_delay=PERIODIC_SKIP_DELAY_S),
        PeriodicSkips(),
        MessageGuard(),
        TrackRetries(),
        ReconcilerThread(),
        EndpointCheck(),
        # Last: its before-hook arms the timer just before the actor runs and, after-hooks running in
        # reverse order, its after-hook disarms it first.  Earlier in the list, the timer stayed armed
        # while Retries re-enqueued, and could kill the worker thread there (TimeLimitExceeded is a
        # BaseException) when Redis was slow.
        TimeLimit(time_limit=cfg.sync.time_limit_ms),
    ]


def build_broker(cfg: settings_module.Settings) -> SyncBroker:
    """The worker's broker: a :class:`SyncBroker` with the middleware of :func:`build_middleware`."""
    return connect(cfg, middleware=build_middleware(cfg))


def _never_retry(retries: int, exception: BaseException) -> bool:
    return False  # the next tick does the work of a failed one


def declare_periodic_actors(cfg: settings_module.Settings) -> dict[str, dramatiq.Actor]:
    """Declare the periodic actors on the current broker (which must carry PeriodiqMiddleware)."""
    common = {"actor_class": scheduler.PeriodicActor, "queue_name": PERIODIC_QUEUE, "priority": 0,
              "retry_when": _never_retry}
    return {
        scheduler.RESYNC_SCHEDULE: dramatiq.actor(
            scheduler.resync_stale_wallets, actor_name=scheduler.RESYNC_SCHEDULE,
            periodic=cron(cfg.scheduler.cron), time_limit=300_000, **common),
        scheduler.HOUSEKEEPING_SCHEDULE: dramatiq.actor(
            scheduler.housekeeping, actor_name=scheduler.HOUSEKEEPING_SCHEDULE,
            periodic=cron(cfg.housekeeping.cron), time_limit=600_000, **common),
    }


# periodiq evaluates crons with pendulum.now(), in the local time zone: schedulers in two zones would
# tick at different hours, and at a DST fall-back an hour's cron would run twice.  Crons are UTC.
pendulum.set_local_timezone(pendulum.UTC)

cfg = settings_module.get()
logs.install(cfg)
broker = build_broker(cfg)
dramatiq.set_broker(broker)

#: One actor per priority, all running the same function; see ``actors.constants`` for why.
SYNC_ACTORS = {
    priority: dramatiq.actor(lifecycle.sync_portfolio, actor_name=actor_name(priority), queue_name=queue,
                             priority=dramatiq_priority)
    for priority, (queue, dramatiq_priority) in QUEUES.items()
}
sync_portfolio = SYNC_ACTORS["normal"]
operations.observe_batches(observe.audit_batch)  # the group commit's batch sizes, as a metric
context.token_lists()  # a list of TOKEN_LIST_URLS that is no valid token list stops the process here

#: The periodic actors (run by ``periodiq actors.worker``), declared after the sync actors.
PERIODIC_ACTORS = declare_periodic_actors(cfg)
