"""Proposal: event-driven consumers — an idle consumer waits for a wake-up, not a poll backoff.

Dramatiq's Redis consumer, when a fetch comes back empty, sleeps an exponential backoff growing up to
``worker_timeout`` (1 s by default) before it looks again: a request arriving while the worker is
idle waits for the next look (measured: p95 ~100 ms, p99 up to ~300 ms).  Here:

- the producer publishes ``{namespace}:wake:{queue}`` in the same pipelined round trip as the
  messages it enqueues (``SyncBroker.enqueue_batch``), and after ``enqueue`` (retries coming due,
  the reconciler's re-enqueues, ``actor.send``);
- an idle consumer of a (non-delay) queue waits on its subscription to that channel for up to
  ``worker_timeout``, and fetches as soon as anything is published.  The subscription is opened
  before the first fetch and kept, so a publish between an empty fetch and the wait is not lost;
  a consumer that cannot subscribe (or loses the subscription) falls back to Dramatiq's backoff.
- a busy consumer (prefetch full) sleeps 5 ms before it looks again, as Dramatiq's first backoff step.

Delay-queue consumers are left as they are (their messages come due by time, not by a publish).

Module for both sides: the worker (``dramatiq bench.proposals.wakeup``) and the producer (imported
before ``actors`` is used).  The same change in the product is ~40 lines in actors/quarantine.py
(the consumer) and actors/broker.py (the publish).
"""

from __future__ import annotations

import logging
import time

import redis
from dramatiq.common import current_millis

import actors  # noqa: F401  (the broker and the actors)
from actors.broker import SyncBroker
from actors.quarantine import QuarantiningConsumer

logger = logging.getLogger(__name__)

#: How long a busy consumer (its prefetch full) waits before it looks again.
BUSY_WAIT_S = 0.005


def wake_channel(namespace: str, queue_name: str) -> str:
    return f"{namespace}:wake:{queue_name}"


class WakeupConsumer(QuarantiningConsumer):
    def __init__(self, broker, queue_name, prefetch, timeout):
        super().__init__(broker, queue_name, prefetch, timeout)
        self._delay_queue = queue_name.endswith(".DQ")
        self._pubsub = None

    def _subscribed(self):
        if self._pubsub is None:
            try:
                pubsub = self.broker.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(wake_channel(self.broker.namespace, self.queue_name))
                self._pubsub = pubsub
            except redis.RedisError as exc:
                logger.warning("Could not subscribe to wake-ups of %r (%s); polling.", self.queue_name, exc)
        return self._pubsub

    def _wait_for_wakeup(self) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            time.sleep(self.timeout / 1000)
            return
        try:
            deadline = time.monotonic() + self.timeout / 1000
            while time.monotonic() < deadline:
                # get_message returns None for the subscribe confirmation too: loop until a publish or the deadline.
                if pubsub.get_message(timeout=max(0.0, deadline - time.monotonic())) is not None:
                    while pubsub.get_message(timeout=0) is not None:  # one fetch serves every wake-up so far
                        pass
                    return
        except (redis.RedisError, OSError, ValueError) as exc:
            logger.warning("Lost the wake-up subscription of %r (%s); resubscribing.", self.queue_name, exc)
            self._close_pubsub()
            time.sleep(BUSY_WAIT_S)

    def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001
                pass
            self._pubsub = None

    def __next__(self):
        if self._delay_queue:
            return super().__next__()
        if not self.message_cache:
            if self.outstanding_message_count >= self.prefetch:
                time.sleep(BUSY_WAIT_S)  # every slot taken: a worker thread frees one soon
                return None
            self._subscribed()  # before the fetch: a publish after it is not missed
            try:
                self.message_cache = self.broker.do_fetch(self.queue_name, self.prefetch - self.outstanding_message_count)
            except redis.ConnectionError:
                return super().__next__()  # Dramatiq's own handling (ConnectionClosed, restart)
            if not self.message_cache:
                self._wait_for_wakeup()
                return None
        return super().__next__()  # pops from the cache: decode, quarantine

    def close(self):
        self._close_pubsub()
        super().close()


def _enqueue_batch(self, messages):
    dispatch = self.scripts["dispatch"]
    pipe = self.client.pipeline(transaction=False)
    sent, queues = [], set()
    for message in messages:
        if "redis_message_id" not in message.options:
            message = self.prepare(message)
        self.emit_before("enqueue", message, None)
        dispatch(keys=[self.namespace], client=pipe, args=[
            "enqueue", current_millis(), message.queue_name, self.broker_id, self.heartbeat_timeout,
            self.dead_message_ttl, self._should_do_maintenance("enqueue"), self._max_unpack_size(),
            message.options["redis_message_id"], message.encode(),
        ])
        sent.append(message)
        queues.add(message.queue_name)
    for queue_name in queues:
        pipe.publish(wake_channel(self.namespace, queue_name), "1")
    pipe.execute()
    for message in sent:
        self.emit_after("enqueue", message, None)
    return sent


_plain_enqueue = SyncBroker.enqueue


def _enqueue(self, message, *, delay=None):
    sent = _plain_enqueue(self, message, delay=delay)
    if delay is None and not sent.queue_name.endswith(".DQ"):
        try:
            self.client.publish(wake_channel(self.namespace, sent.queue_name), "1")
        except redis.RedisError:
            pass  # the consumer finds it at its next look (worker_timeout at most)
    return sent


SyncBroker.consumer_class = property(lambda self: WakeupConsumer)
SyncBroker.enqueue_batch = _enqueue_batch
SyncBroker.enqueue = _enqueue
