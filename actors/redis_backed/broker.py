"""The Redis broker: Dramatiq's RedisBroker, made faster to enqueue on and quicker to wake up.

:func:`connect` builds it from the settings; the worker (``actors.worker``) gives it its
middleware, a producer none (see ``actors.services.context``).  Its queues are those of
``actors.constants``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Sequence

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message
from dramatiq.middleware import Middleware, MiddlewareError

import settings as settings_module

from ..constants import DEFAULT_QUARANTINE_MAX, PERIODIC_QUEUE, QUEUES
from ..ids import uuid4_string
from . import scripts
from .consumer import QuarantiningConsumer
from .inspection import heartbeats_key, in_flight_key
from .redis_clock import RedisClock
from .wakeup import wake_channel

logger = logging.getLogger(__name__)

#: Messages stored by one call of the ``enqueue_many`` script: a call blocks Redis while it runs.
_ENQUEUE_CHUNK = 1000

#: Dead workers whose messages one :meth:`SyncBroker.recover_dead_workers` call looks at (the most recently dead).
DEAD_WORKERS_PER_CALL = 100

#: At most one warning per this many seconds about wake-ups that could not be published.
_PUBLISH_WARNING_INTERVAL_S = 60.0


@dataclasses.dataclass
class EncodedBatch:
    """Messages ready to be stored (:meth:`SyncBroker.encode_batch`)."""

    messages: list[Message]
    #: queue name -> (Redis id, body) pairs, flat, in the messages' order.
    by_queue: dict[str, list[str | bytes]]


class SyncBroker(RedisBroker):
    """A RedisBroker that enqueues batches in one pipelined round trip, lets the producer know a
    message's Redis id before it is sent, wakes up the idle consumers of the queues it enqueues on
    (``actors.redis_backed.wakeup``), and quarantines undecodable messages.

    Parameters (besides RedisBroker's):
      quarantine_max(int): undecodable messages kept in ``{namespace}:quarantine``.
        Default :data:`~actors.constants.DEFAULT_QUARANTINE_MAX`.
    """

    def __init__(self, *, quarantine_max: int = DEFAULT_QUARANTINE_MAX, **kwargs):
        super().__init__(**kwargs)
        self.quarantine_max = quarantine_max
        self.clock = RedisClock(self.client)
        self._enqueue_many = self.client.register_script(scripts.source("enqueue_many"))
        self._requeue_head = self.client.register_script(scripts.source("requeue_head"))
        self._recover_dead_workers = self.client.register_script(scripts.source("recover_dead_workers"))
        self._publish_warned_at = -_PUBLISH_WARNING_INTERVAL_S
        #: (queue, Redis id) of the messages acked on another round trip (:meth:`queue_ack`), whose
        #: consumer's ack only forgets them (:meth:`forget_acked`).
        self._acked: set[tuple[str, str]] = set()
        #: queue -> Redis ids of the messages this process's consumers handed to its worker and have not yet
        #: acked, nacked or requeued: what, of the process's in-flight set, is really in its hands.
        self._handed_out: dict[str, set[str]] = collections.defaultdict(set)

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

    def _dispatch(self, command):
        """Dramatiq's dispatch with Redis's clock as its timestamp: a worker's heartbeat, and its
        maintenance's judgement of which workers are dead (heartbeat older than ``heartbeat_timeout``),
        then compare times of one clock.  On each host's own clock, a worker whose clock ran
        ``heartbeat_timeout`` behind was declared dead by the others, and one that ran ahead declared
        every other worker dead, their in-flight messages requeued again and again."""
        dispatch = self.scripts["dispatch"]
        keys = [self.namespace]

        def do_dispatch(queue_name, *args):
            return dispatch(args=[command, self.clock.now_ms(), queue_name, self.broker_id, self.heartbeat_timeout,
                                  self.dead_message_ttl, self._should_do_maintenance(command),
                                  self._max_unpack_size(), *args], keys=keys)

        return do_dispatch

    def queue_ack(self, pipeline: redis.client.Pipeline, queue_name: str, redis_message_id: str) -> None:
        """Queue on ``pipeline`` the ack of the message ``redis_message_id`` fetched from ``queue_name``, as its
        consumer would send it (Dramatiq's dispatch script, its heartbeat and maintenance chance included), so
        it rides on a round trip the worker makes anyway.  Once that is sent, :meth:`acked` tells the consumer."""
        scripts.queue(pipeline, self.scripts["dispatch"], keys=[self.namespace],
                      args=["ack", self.clock.now_ms(), queue_name, self.broker_id, self.heartbeat_timeout,
                            self.dead_message_ttl, self._should_do_maintenance("ack"), self._max_unpack_size(),
                            redis_message_id])

    def acked(self, queue_name: str, redis_message_id: str) -> None:
        """The ack of ``redis_message_id`` queued with :meth:`queue_ack` has been applied."""
        self._acked.add((queue_name, redis_message_id))

    def forget_acked(self, queue_name: str, redis_message_id: str | None) -> bool:
        """Whether the message was acked already (:meth:`acked`); forgets it."""
        try:
            self._acked.remove((queue_name, redis_message_id))
        except KeyError:
            return False
        return True

    def flush_all(self) -> None:
        """Empty every queue and in-flight set, and forget what this process held."""
        super().flush_all()
        self._acked.clear()
        self._handed_out.clear()

    def handed_out(self, queue_name: str, redis_message_id: str | None) -> None:
        """A consumer handed the message to the worker: it is in this process's hands until :meth:`settled`."""
        self._handed_out[queue_name].add(redis_message_id)

    def settled(self, queue_name: str, redis_message_id: str | None) -> None:
        """The message was acked, nacked or requeued."""
        self._handed_out[queue_name].discard(redis_message_id)

    def held(self, queue_name: str) -> set[str]:
        """The Redis ids of the messages of ``queue_name`` in this process's hands now."""
        return set(self._handed_out[queue_name])

    def do_requeue(self, queue_name: str, *redis_message_ids: str) -> int:
        """Put the messages ``redis_message_ids`` of this worker's in-flight set back at the head of
        ``queue_name`` (``lua/requeue_head.lua``), and wake its idle consumers; returns how many went back.

        Dramatiq's requeue, which this replaces for its consumers' ``requeue`` and ``close`` (a stopping
        worker's messages handed out and not run, and those fetched and not handed out) and
        :meth:`QuarantiningConsumer.give_back_unheld`, put them at the tail: they
        then ran after everything enqueued since they were first fetched, and the other workers' idle
        consumers found them only at their next look (``worker_timeout``)."""
        if not redis_message_ids:
            return 0
        channel = "" if queue_name.endswith(".DQ") else wake_channel(self.namespace, queue_name)
        return self._requeue_head(keys=[in_flight_key(self.namespace, self.broker_id, queue_name),
                                        f"{self.namespace}:{queue_name}", f"{self.namespace}:{queue_name}.msgs"],
                                  args=[channel, *redis_message_ids])

    def recover_dead_workers(self) -> int:
        """Put every message in a dead worker's in-flight sets (its heartbeat older than ``heartbeat_timeout``)
        back at the head of its queue, and wake the queue's idle consumers (``lua/recover_dead_workers.lua``);
        returns how many went back.  The reconciler calls it, once Redis has answered it for a whole
        heartbeat timeout: after an outage every worker's heartbeat is old, the live ones' too.

        Dramatiq recovers them in its maintenance, which a broker command draws by chance
        (``BROKER_MAINTENANCE_CHANCE``) and which covers only that command's queue: the messages a worker
        killed with ``kill -9`` had prefetched came back after the heartbeat timeout and then as many
        chances as it took, tens of seconds, once over a minute."""
        pairs = []
        for queue_name in sorted(self.queues | self.delay_queues):
            pairs += [queue_name, "" if queue_name.endswith(".DQ") else wake_channel(self.namespace, queue_name)]
        return self._recover_dead_workers(keys=[heartbeats_key(self.namespace)],
                                          args=[self.namespace, self.clock.now_ms(), self.heartbeat_timeout,
                                                self.broker_id, DEAD_WORKERS_PER_CALL, *pairs])

    @staticmethod
    def prepare(message: Message) -> Message:
        """``message`` with the Redis id it will be stored under, so it can be recorded before it is sent."""
        return message.copy(options={"redis_message_id": uuid4_string()})

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

        The messages of a queue are stored by one script call per thousand (``lua/enqueue_many.lua``), in
        the layout of Dramatiq's own enqueue, rather than by Dramatiq's dispatch script once per
        message, whose producer heartbeat and maintenance chance were most of a batch's cost: a
        producer holds no messages to recover, and the workers' own fetches and acks run the
        maintenance.
        """
        return self.send_encoded(self.encode_batch(messages))

    def encode_batch(self, messages: Sequence[Message]) -> EncodedBatch:
        """The part of :meth:`enqueue_batch` that needs no Redis: ``messages`` (each :meth:`prepare`-d
        if it was not) and their bodies, by queue.  Send them with :meth:`send_encoded`."""
        batch = EncodedBatch([], {})
        for message in messages:
            if "redis_message_id" not in message.options:
                message = self.prepare(message)
            batch.by_queue.setdefault(message.queue_name, []).extend((message.options["redis_message_id"],
                                                                      message.encode()))
            batch.messages.append(message)
        return batch

    def send_encoded(self, batch: EncodedBatch) -> list[Message]:
        """Enqueue the messages of ``batch`` as :meth:`enqueue_batch` does; returns them."""
        for message in batch.messages:
            self.emit_before("enqueue", message, None)
        pipe = self.client.pipeline(transaction=False)
        stores = 0
        for queue_name, args in batch.by_queue.items():
            for start in range(0, len(args), 2 * _ENQUEUE_CHUNK):
                scripts.queue(pipe, self._enqueue_many, args=args[start:start + 2 * _ENQUEUE_CHUNK],
                              keys=[f"{self.namespace}:{queue_name}", f"{self.namespace}:{queue_name}.msgs"])
                stores += 1
        # Once per queue, after its messages in the same pipeline: Redis runs the publishes after the
        # stores, so a consumer woken up finds the messages.
        woken = [queue_name for queue_name in sorted(batch.by_queue) if not queue_name.endswith(".DQ")]
        for queue_name in woken:
            pipe.publish(wake_channel(self.namespace, queue_name), "1")
        results = scripts.execute(pipe)
        # An error of a store is the caller's; one of a publish only is not (see enqueue).
        scripts.raise_first_error(results[:stores])
        for queue_name, result in zip(woken, results[stores:]):
            if isinstance(result, Exception):
                self._warn_publish_failed(queue_name, result)
        for message in batch.messages:
            self.emit_after("enqueue", message, None)
        return batch.messages

    def _warn_publish_failed(self, queue_name: str, exc: redis.RedisError) -> None:
        # Rate-limited: a Redis that refuses PUBLISH (an ACL, say) would otherwise log once per message.
        now = time.monotonic()
        if now - self._publish_warned_at >= _PUBLISH_WARNING_INTERVAL_S:
            self._publish_warned_at = now
            logger.warning("Enqueued on %r, but could not wake up its consumers (%s): they find the message at "
                           "their next look, worker_timeout at most.", queue_name, exc)


def connect(cfg: settings_module.Settings, *, middleware: Sequence[Middleware] = ()) -> SyncBroker:
    """A :class:`SyncBroker` on ``REDIS_URL`` with ``middleware``, its queues declared."""
    # Built here rather than from ``url=``: RedisBroker drops socket options when given a URL,
    # and every Redis call must time out rather than hang a worker thread.
    client = redis.Redis.from_url(cfg.redis.url, socket_timeout=cfg.redis.timeout_s,
                                  socket_connect_timeout=cfg.redis.timeout_s, health_check_interval=30)
    # Dramatiq's own recovery of a dead worker's messages: an 8 s heartbeat timeout and a maintenance
    # pass on 5% of commands (defaults: 60 s and 0.1%, which took minutes).  The reconciler
    # (actors.services.reconciler) recovers dead workers' messages on every pass
    # (SyncBroker.recover_dead_workers), and running operations sooner still, from their leases.
    broker = SyncBroker(client=client, namespace=cfg.sync.namespace, middleware=list(middleware),
                        heartbeat_timeout=cfg.broker.heartbeat_timeout_ms,
                        maintenance_chance=cfg.broker.maintenance_chance, quarantine_max=cfg.broker.quarantine_max)
    for queue_name, _priority in QUEUES.values():
        broker.declare_queue(queue_name)
    broker.declare_queue(PERIODIC_QUEUE)
    return broker
