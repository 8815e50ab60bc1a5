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

import logging
import time
import uuid
from collections.abc import Sequence

import psycopg
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message
from dramatiq.middleware import (AgeLimit, CurrentMessage, Middleware, MiddlewareError, Retries,
                                 ShutdownNotifications, TimeLimit)
from periodiq import PeriodiqMiddleware

import settings as settings_module

from . import redis_scripts
from .errors import SyncAttemptFailed
from .quarantine import QuarantiningConsumer
from .wakeup import wake_channel

logger = logging.getLogger(__name__)

QUEUES = {"high": ("sync_high", 0), "normal": ("sync", 50), "low": ("sync_low", 100)}
#: The periodic actors' own queue (actors.scheduler): a backlog of syncs never delays a tick.
PERIODIC_QUEUE = "periodic"

#: Errors of the infrastructure itself that are worth another attempt.
TRANSIENT_INFRASTRUCTURE_ERRORS = (psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError,
                                   ConnectionError, TimeoutError)
#: Messages stored by one call of _ENQUEUE_MANY: a call blocks Redis while it runs.
_ENQUEUE_CHUNK = 1000
# Store messages as Dramatiq's dispatch script does for "enqueue" (dramatiq 2.x): the body in the
# queue's ``.msgs`` hash under its Redis id, the id at the tail of the queue's list.
# KEYS: the queue's list, its hash; ARGV: (Redis id, body) pairs.
_ENQUEUE_MANY = """
local ids = {}
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  ids[#ids + 1] = ARGV[i]
  if #ids == 500 then
    redis.call('RPUSH', KEYS[1], unpack(ids))
    ids = {}
  end
end
if #ids > 0 then redis.call('RPUSH', KEYS[1], unpack(ids)) end
return #ARGV / 2
"""

#: At most one warning per this many seconds about wake-ups that could not be published.
_PUBLISH_WARNING_INTERVAL_S = 60.0


class SyncBroker(RedisBroker):
    """A RedisBroker that enqueues batches in one pipelined round trip, lets the producer know a
    message's Redis id before it is sent, wakes up the idle consumers of the queues it enqueues on
    (``actors.wakeup``), and quarantines undecodable messages.

    Parameters (besides RedisBroker's):
      quarantine_max(int): undecodable messages kept in ``{namespace}:quarantine``. Default 10,000.
    """

    def __init__(self, *, quarantine_max: int = 10_000, **kwargs):
        super().__init__(**kwargs)
        self.quarantine_max = quarantine_max
        self._enqueue_many = self.client.register_script(_ENQUEUE_MANY)
        self._publish_warned_at = -_PUBLISH_WARNING_INTERVAL_S

    @property
    def consumer_class(self):
        return QuarantiningConsumer

    # Dramatiq calls every middleware's hook for every signal, most of them Middleware's own no-ops:
    # 13 middleware, two signals per enqueue and several per message processed, were 8-10% of a
    # worker's CPU.  The hooks that do something are looked up once per signal instead; the loops
    # keep Broker.emit_before/emit_after's order and error handling.
    def add_middleware(self, middleware: Middleware, **kwargs) -> None:
        super().add_middleware(middleware, **kwargs)
        self._hooks = {}

    def _hooks_of(self, name: str) -> list:
        hooks = self.__dict__.setdefault("_hooks", {}).get(name)
        if hooks is None:
            no_op = getattr(Middleware, name, None)
            hooks = self._hooks[name] = [
                hook for hook in (getattr(m, name) for m in self.middleware)
                if no_op is None or getattr(hook, "__func__", None) is not no_op]
        return hooks

    def emit_before(self, signal: str, *args, **kwargs) -> None:
        for hook in self._hooks_of("before_" + signal):
            try:
                hook(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in before_%s of %r.", signal, getattr(hook, "__self__", hook),
                                     exc_info=True)

    def emit_after(self, signal: str, *args, **kwargs) -> None:
        for hook in reversed(self._hooks_of("after_" + signal)):
            try:
                hook(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in after_%s of %r.", signal, getattr(hook, "__self__", hook),
                                     exc_info=True)

    @staticmethod
    def prepare(message: Message) -> Message:
        """``message`` with the Redis id it will be stored under, so it can be recorded before it is sent."""
        return message.copy(options={"redis_message_id": str(uuid.uuid4())})

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Enqueue ``message`` as RedisBroker does, then wake up the idle consumers of its queue.

        Parameters:
          message(Message): the message.
          delay(int | None): ms to delay it by. Default ``None``: none.  A delayed message goes to
            the delay queue unannounced; when it comes due, Dramatiq's delay-queue consumer
            enqueues it here again, without delay, and it is announced then.
        """
        sent = super().enqueue(message, delay=delay)
        if delay is None and not sent.queue_name.endswith(".DQ"):
            try:
                self.client.publish(wake_channel(self.namespace, sent.queue_name), "1")
            except redis.RedisError as exc:
                # The message is stored: an idle consumer finds it at its next look (worker_timeout at most),
                # so the caller must not see an error, nor send it again.
                self._warn_publish_failed(sent.queue_name, exc)
        return sent

    def enqueue_batch(self, messages: Sequence[Message]) -> list[Message]:
        """Enqueue ``messages`` (no delay) with one Redis round trip, which also wakes up the idle
        consumers of their queues; middleware hooks run as for ``enqueue``.
        A message already :meth:`prepare`-d keeps its Redis id.

        The messages of a queue are stored by one script call per thousand (``_ENQUEUE_MANY``), in
        the layout of Dramatiq's own enqueue, rather than by Dramatiq's dispatch script once per
        message, whose producer heartbeat and maintenance chance were most of a batch's cost: a
        producer holds no messages to recover, and the workers' own fetches and acks run the
        maintenance.
        """
        by_queue: dict[str, list[str | bytes]] = {}
        sent = []
        for message in messages:
            if "redis_message_id" not in message.options:
                message = self.prepare(message)
            self.emit_before("enqueue", message, None)
            by_queue.setdefault(message.queue_name, []).extend((message.options["redis_message_id"], message.encode()))
            sent.append(message)
        pipe = self.client.pipeline(transaction=False)
        stores = 0
        for queue_name, args in by_queue.items():
            for start in range(0, len(args), 2 * _ENQUEUE_CHUNK):
                redis_scripts.queue(pipe, self._enqueue_many, args=args[start:start + 2 * _ENQUEUE_CHUNK],
                                    keys=[f"{self.namespace}:{queue_name}", f"{self.namespace}:{queue_name}.msgs"])
                stores += 1
        # Once per queue, after its messages in the same pipeline: Redis runs the publishes after the
        # stores, so a consumer woken up finds the messages.
        woken = [queue_name for queue_name in sorted(by_queue) if not queue_name.endswith(".DQ")]
        for queue_name in woken:
            pipe.publish(wake_channel(self.namespace, queue_name), "1")
        results = redis_scripts.execute(pipe)
        # An error of a store is the caller's; one of a publish only is not (see enqueue).
        redis_scripts.raise_first_error(results[:stores])
        for queue_name, result in zip(woken, results[stores:]):
            if isinstance(result, Exception):
                self._warn_publish_failed(queue_name, result)
        for message in sent:
            self.emit_after("enqueue", message, None)
        return sent

    def _warn_publish_failed(self, queue_name: str, exc: redis.RedisError) -> None:
        # Rate-limited: a Redis that refuses PUBLISH (an ACL, say) would otherwise log once per message.
        now = time.monotonic()
        if now - self._publish_warned_at >= _PUBLISH_WARNING_INTERVAL_S:
            self._publish_warned_at = now
            logger.warning("Enqueued on %r, but could not wake up its consumers (%s): they find the message at "
                           "their next look, worker_timeout at most.", queue_name, exc)


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
    from .endpoints import EndpointCheck
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
        EndpointCheck(),
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
