"""Wake-ups: a producer tells the idle consumers of a queue that it enqueued something.

After a fetch that comes back empty, Dramatiq's Redis consumer sleeps an exponential backoff that
grows up to ``worker_timeout`` (1 s by default) before it looks again.  A request that arrives
while a worker is idle waits for that next look (measured: p50 30 ms, p99 over 120 ms; see
docs/performance.md).  Instead, whoever enqueues on ``queue`` publishes on
:func:`wake_channel` (``actors.redis_backed.broker.SyncBroker``), and an idle consumer waits on its
:class:`Wakeups` subscription to that channel, so it fetches as soon as something is enqueued.

A wake-up is only a hint: the messages are in the queue whether or not it arrives.  Redis pub/sub
delivers at most once, to the subscribers connected at that moment, so a wake-up that is lost
(a failed publish, a dropped connection, a consumer not subscribed yet) costs no message, only
latency: a consumer never waits longer than ``worker_timeout`` before it fetches again.
"""

from __future__ import annotations

import logging
import time

import redis

logger = logging.getLogger(__name__)


def wake_channel(namespace: str, queue_name: str) -> str:
    """The pub/sub channel announcing new messages on ``queue_name`` of the broker's ``namespace``."""
    return f"{namespace}:wake:{queue_name}"


class Wakeups:
    """One consumer's subscription to the wake-ups of its queue.  Not thread-safe: one consumer
    thread uses it (only :meth:`close` may come from another thread, at shutdown).

    The consumer calls :meth:`listen` just before each fetch and, when the fetch came back empty,
    :meth:`wait`.  A subscription that cannot be opened, or is lost, is closed and logged; the
    consumer then polls (``listen``/``wait`` return ``False``) until ``listen`` opens a new one,
    no sooner than ``retry_after_s`` later.

    Parameters:
      client(redis.Redis): the client whose connection pool gives the subscription its connection.
      channel(str): the channel to subscribe to (:func:`wake_channel`).
      confirm_timeout_s(float | None): how long :meth:`listen` waits for Redis to confirm a new
        subscription. Default ``None``: the client's socket timeout (``REDIS_TIMEOUT_S``), or 5 s.
      retry_after_s(float): after a failed or lost subscription, how long until :meth:`listen`
        subscribes again. Default 5.
    """

    def __init__(self, client: redis.Redis, channel: str, *, confirm_timeout_s: float | None = None,
                 retry_after_s: float = 5.0):
        self.client = client
        self.channel = channel
        if confirm_timeout_s is None:
            confirm_timeout_s = client.connection_pool.connection_kwargs.get("socket_timeout") or 5.0
        self.confirm_timeout_s = confirm_timeout_s
        self.retry_after_s = retry_after_s
        self._pubsub: redis.client.PubSub | None = None
        self._retry_at = 0.0  # time.monotonic() before which listen() does not subscribe again

    @property
    def subscribed(self) -> bool:
        return self._pubsub is not None

    def listen(self) -> bool:
        """Make sure the subscription is open, and drop the wake-ups received so far; ``True`` if
        subscribed.

        Call it just before a fetch.  Every message a wake-up received so far announces was
        enqueued before its publish, so that fetch sees it (or another consumer has taken it).
        And a new subscription is only counted once Redis has confirmed it: a message enqueued
        after the fetch looked is then announced to this consumer, never missed between the two.
        """
        if self._pubsub is None:
            if time.monotonic() < self._retry_at:
                return False
            self._subscribe()
            return self._pubsub is not None
        try:
            while self._pubsub.get_message(timeout=0) is not None:
                pass
        except Exception as exc:  # noqa: BLE001  (a hint: whatever fails, the consumer polls instead)
            self._lost(exc)
        return self._pubsub is not None

    def wait(self, timeout_s: float) -> bool:
        """Wait until a wake-up arrives or ``timeout_s`` seconds pass, and say ``True``; ``False`` at
        once if there is no subscription, or when it is lost (it is closed): the caller then waits
        its own way."""
        pubsub = self._pubsub
        if pubsub is None:
            return False
        deadline = time.monotonic() + timeout_s
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                # Anything else read here (a health-check pong, the confirmation of the automatic
                # resubscription after redis-py reconnected) is not a wake-up: keep waiting.
                message = pubsub.get_message(timeout=remaining)
                if message is not None and message["type"] == "message":
                    return True
        except Exception as exc:  # noqa: BLE001  (a hint: whatever fails, the consumer polls instead)
            self._lost(exc)
            return False
        return True

    def close(self) -> None:
        """Close the subscription and give its connection back to the pool."""
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # noqa: BLE001  (a connection already broken: nothing left to close)
                pass

    def _subscribe(self) -> None:
        pubsub = None
        try:
            pubsub = self.client.pubsub()
            pubsub.subscribe(self.channel)
            # SUBSCRIBE is only sent: wait for Redis's confirmation, so that the fetch that follows
            # runs after the subscription in Redis's order of commands.
            deadline = time.monotonic() + self.confirm_timeout_s
            while True:
                message = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                if message is not None and message["type"] == "subscribe":
                    break
                if time.monotonic() >= deadline:
                    raise redis.TimeoutError(f"no confirmation within {self.confirm_timeout_s} s")
        except Exception as exc:  # noqa: BLE001  (a hint: whatever fails, the consumer polls instead)
            logger.warning("Could not subscribe to the wake-ups on %r (%s); polling, subscribing again in %s s.",
                           self.channel, exc, self.retry_after_s)
            if pubsub is not None:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001
                    pass
            self._retry_at = time.monotonic() + self.retry_after_s
            return
        self._pubsub = pubsub

    def _lost(self, exc: BaseException) -> None:
        logger.warning("Lost the subscription to the wake-ups on %r (%s); polling, subscribing again in %s s.",
                       self.channel, exc, self.retry_after_s)
        self.close()
        self._retry_at = time.monotonic() + self.retry_after_s
