"""The Redis broker and its middleware: the only place Dramatiq is configured.

Queues, by priority (a worker consumes all of them; its local work queue runs
lower ``priority`` numbers first, and each Redis queue has its own consumer, so
a ``high`` request is fetched and started ahead of any backlog of ``low`` ones):

==========  =============  ==================
priority    Redis queue    Dramatiq priority
==========  =============  ==================
high        sync_high      0
normal      sync           50
low         sync_low       100
==========  =============  ==================
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import psycopg
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.message import Message
from dramatiq.middleware import AgeLimit, CurrentMessage, Retries, ShutdownNotifications, TimeLimit
from periodiq import PeriodiqMiddleware

import settings as settings_module

from .errors import SyncAttemptFailed
from .quarantine import QuarantiningConsumer

QUEUES = {"high": ("sync_high", 0), "normal": ("sync", 50), "low": ("sync_low", 100)}
#: The periodic actors' own queue (actors.scheduler): a backlog of syncs never delays a tick.
PERIODIC_QUEUE = "periodic"

#: Errors of the infrastructure itself that are worth another attempt.
TRANSIENT_INFRASTRUCTURE_ERRORS = (psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError,
                                   ConnectionError, TimeoutError)


class SyncBroker(RedisBroker):
    """A RedisBroker that enqueues batches in one pipelined round trip, lets the producer know a
    message's Redis id before it is sent, and quarantines undecodable messages.

    Parameters (besides RedisBroker's):
      quarantine_max(int): undecodable messages kept in ``{namespace}:quarantine``. Default 10,000.
    """

    def __init__(self, *, quarantine_max: int = 10_000, **kwargs):
        super().__init__(**kwargs)
        self.quarantine_max = quarantine_max

    @property
    def consumer_class(self):
        return QuarantiningConsumer

    @staticmethod
    def prepare(message: Message) -> Message:
        """``message`` with the Redis id it will be stored under, so it can be recorded before it is sent."""
        return message.copy(options={"redis_message_id": str(uuid.uuid4())})

    def enqueue_batch(self, messages: Sequence[Message]) -> list[Message]:
        """Enqueue ``messages`` (no delay) with one Redis round trip; middleware hooks run as for ``enqueue``.
        A message already :meth:`prepare`-d keeps its Redis id."""
        dispatch = self.scripts["dispatch"]
        pipe = self.client.pipeline(transaction=False)
        sent = []
        for message in messages:
            if "redis_message_id" not in message.options:
                message = self.prepare(message)
            self.emit_before("enqueue", message, None)
            # The argument layout of RedisBroker._dispatch (dramatiq 2.x) for the "enqueue" command.
            dispatch(keys=[self.namespace], client=pipe, args=[
                "enqueue", current_millis(), message.queue_name, self.broker_id, self.heartbeat_timeout,
                self.dead_message_ttl, self._should_do_maintenance("enqueue"), self._max_unpack_size(),
                message.options["redis_message_id"], message.encode(),
            ])
            sent.append(message)
        pipe.execute()
        for message in sent:
            self.emit_after("enqueue", message, None)
        return sent


def make_retry_when(max_attempts: int, infra_max_retries: int):
    """Retry only transient failures.

    An attempt that failed (:class:`SyncAttemptFailed`) was counted in the audit trail, which
    decided whether another one is due; a message that could not even start or finish its
    attempt because Redis or PostgreSQL was away is retried up to ``infra_max_retries`` times
    (with backoff), so a database outage does not use up an operation's attempts.
    """

    def retry_when(retries: int, exception: BaseException) -> bool:
        if isinstance(exception, SyncAttemptFailed):
            return exception.retry and retries < max(max_attempts, infra_max_retries)
        if isinstance(exception, TRANSIENT_INFRASTRUCTURE_ERRORS):
            return retries < infra_max_retries
        return False

    return retry_when


def build_broker(cfg: settings_module.Settings) -> SyncBroker:
    from .guard import MessageGuard
    from .logs import JobLogContext
    from .metrics import worker_middleware
    from .process import WorkerProcessGuard
    from .reconciler import ReconcilerMiddleware, TrackRetries
    from .scheduler import PERIODIC_SKIP_DELAY_S, PeriodicSkips

    middleware = [
        JobLogContext(), *worker_middleware(cfg),  # first: every middleware's log lines of a job carry its ids
        WorkerProcessGuard(),
        AgeLimit(max_age=cfg.max_age_ms),
        ShutdownNotifications(),
        Retries(max_retries=cfg.max_attempts - 1, min_backoff=cfg.retry_min_backoff_ms,
                max_backoff=cfg.retry_max_backoff_ms,
                retry_when=make_retry_when(cfg.max_attempts, cfg.infra_max_retries)),
        CurrentMessage(),
        PeriodiqMiddleware(skip_delay=PERIODIC_SKIP_DELAY_S),
        PeriodicSkips(),
        MessageGuard(),
        TrackRetries(),
        ReconcilerMiddleware(),
        # Last: its before-hook arms the timer just before the actor runs and, after-hooks running in
        # reverse order, its after-hook disarms it first.  Earlier in the list, the timer stayed armed
        # while Retries re-enqueued, and could kill the worker thread there (TimeLimitExceeded is a
        # BaseException) when Redis was slow.
        TimeLimit(time_limit=cfg.time_limit_ms),
    ]
    # Built here rather than from ``url=``: RedisBroker drops socket options when given a URL,
    # and every Redis call must time out rather than hang a worker thread.
    client = redis.Redis.from_url(cfg.redis_url, socket_timeout=cfg.redis_timeout_s,
                                  socket_connect_timeout=cfg.redis_timeout_s, health_check_interval=30)
    # Dramatiq's own recovery of a dead worker's messages: an 8 s heartbeat timeout and a maintenance
    # pass on 5% of commands (defaults: 60 s and 0.1%, which took minutes); the reconciler
    # (actors.reconciler) brings operations back faster still, from their leases.
    broker = SyncBroker(client=client, namespace=cfg.namespace, middleware=middleware,
                        heartbeat_timeout=cfg.broker_heartbeat_timeout_ms,
                        maintenance_chance=cfg.broker_maintenance_chance, quarantine_max=cfg.quarantine_max)
    for queue_name, _priority in QUEUES.values():
        broker.declare_queue(queue_name)
    broker.declare_queue(PERIODIC_QUEUE)
    return broker
