"""A Redis consumer that never lets a bad message or a slow Redis stop it.

Dramatiq's Redis consumer decodes each fetched message as it hands it out.  A
body that is not valid JSON raises out of the consumer; so do bodies that are
JSON but not a message this worker can handle (fields of the wrong type, an
unknown actor, another queue's name), further down, in the worker's threads.
Either way Dramatiq restarts the consumer, and the valid messages fetched in
the same batch stay in this live worker's in-flight set, unprocessed, until it
restarts.

:class:`QuarantiningConsumer` checks each body before handing it out: one that
is not a well-formed message for one of this worker's actors and this queue is
moved to ``{namespace}:quarantine`` (a capped list, shown on the dashboard and
by the CLI), removed from the queue's bookkeeping, and logged; the rest of the
batch flows on.

A message the worker thread has acked already, on the attempt's last round trip
(``SyncBroker.queue_ack``), is only forgotten by :meth:`QuarantiningConsumer.ack`.

It also treats a Redis *timeout* like a lost connection (Dramatiq only does so
for connection errors): an ack or nack that timed out is then retried until
Redis answers, instead of being given up, which would leave the message in
this worker's in-flight set for good.

When Dramatiq gives a consumer up for a new one (a lost connection, any error,
a pause), the messages it had fetched and not handed out are dropped with it,
and so are those of a fetch whose answer the connection lost, and a delay
queue's delayed messages: all stay in this live worker's in-flight set, which
Dramatiq recovers only from dead workers.  The broker knows which messages
its consumers handed out and have not settled; a new consumer puts the rest of
the in-flight set back at the head of the queue before its first fetch
(:meth:`QuarantiningConsumer.give_back_unheld`), and a consumer that requeues or
closes (a worker stopping, or replacing it after an error) puts back what it fetched
and did not hand out, behind what it requeues.  That assumes one consumer per queue in
a process, as Dramatiq's worker runs.

And it is woken up rather than polling (``actors.redis_backed.wakeup``): when a fetch comes
back empty, the consumer of a queue waits on its subscription to the queue's
wake-ups, up to ``worker_timeout``, instead of sleeping Dramatiq's growing
backoff, so a message enqueued on an idle worker starts within milliseconds.
A fetch that brought fewer messages than it asked for emptied the queue: the
consumer then waits for a wake-up before it fetches again.
A delay-queue consumer keeps Dramatiq's backoff (its messages come due by time,
and nothing announces that), and so does a consumer whose subscription failed,
until it subscribes again.
"""

from __future__ import annotations

import json
import logging
import time

import redis
from dramatiq.brokers.redis import _RedisConsumer
from dramatiq.broker import MessageProxy
from dramatiq.common import compute_backoff, q_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from .inspection import in_flight_key
from .wakeup import Wakeups, wake_channel

logger = logging.getLogger(__name__)

#: How long a consumer whose prefetch is full waits before it looks again (Dramatiq's first backoff step).
BUSY_WAIT_S = 0.005
#: Bytes of a quarantined body kept for inspection.
_KEEP_BYTES = 65536
_FIELDS = {"queue_name": str, "actor_name": str, "args": list, "kwargs": dict, "options": dict,
           "message_id": str, "message_timestamp": int}


class BadMessage(ValueError):
    """A body that is not a well-formed message for this consumer; the text says what is wrong."""


class QuarantiningConsumer(_RedisConsumer):
    """The consumer of one queue (or delay queue, ``*.DQ``) for one worker process.

    Parameters (Dramatiq's, given by its worker):
      broker(SyncBroker): the broker.
      queue_name(str): the queue.
      prefetch(int): at most this many messages fetched and not yet acked.
      timeout(int): ``worker_timeout``, ms: the longest an idle consumer waits before it fetches again.
    """

    def __init__(self, broker, queue_name, prefetch, timeout):
        super().__init__(broker, queue_name, prefetch, timeout)
        # Delay queues are announced by nobody (their messages come due by time): they keep Dramatiq's backoff.
        self.delayed = queue_name.endswith(".DQ")
        self.wakeups = None if self.delayed else Wakeups(broker.client, wake_channel(broker.namespace, queue_name))
        self._drained = False  # the last fetch brought fewer messages than it asked for
        self._recovered = False  # give_back_unheld has run before the first fetch

    def __next__(self):
        try:
            while True:
                if not self.message_cache and not self._fetch():
                    return None  # nothing yet: the worker gets None (a chance to stop), and asks again
                data = self.message_cache.pop(0)
                if data is None:  # dramatiq issue 266: a fetched id whose body was gone
                    continue
                self.misses = 0
                try:
                    message = self.check(data)
                except BadMessage as exc:
                    self._quarantine(data, exc)
                    continue
                self.queued_message_ids.add(message.message_id)
                if not self.delayed:
                    self.broker.handed_out(self.queue_name, message.options.get("redis_message_id"))
                return MessageProxy(message)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionClosed(exc) from None

    def _fetch(self) -> bool:
        """Fetch up to the prefetch limit into the message cache; if nothing came, wait (a wake-up,
        ``worker_timeout`` at most, or Dramatiq's backoff) and say ``False``."""
        if not self._recovered:
            given = self.give_back_unheld()
            self._recovered = True
            if given:
                logger.warning("Consumer of %s: %d message(s) an earlier consumer dropped are back at the head of "
                               "the queue.", self.queue_name, given)
        if self.wakeups is not None and self.outstanding_message_count >= self.prefetch:
            # Every slot is taken, and one frees as soon as a worker thread finishes a job: look again
            # soon, rather than after a backoff growing to worker_timeout while worker threads idle.
            time.sleep(BUSY_WAIT_S)
            return False
        waited = False
        if self._drained and self.wakeups is not None and self.wakeups.subscribed:
            # The last fetch took everything the queue had, and what is enqueued from then on is
            # announced (we listened before it): wait for that, rather than fetch again at once.  On an
            # idle worker that second fetch, always empty, ran beside the first message's lease and
            # start, on the same Redis and for the same GIL.
            self._drained = False
            waited = self.wakeups.wait(self.timeout / 1000)
        # Listen before the fetch, so a message enqueued after the fetch looked is announced to us.
        listening = self.wakeups is not None and self.wakeups.listen()
        if self.outstanding_message_count < self.prefetch:
            wanted = self.prefetch - self.outstanding_message_count
            self.message_cache = self.broker.do_fetch(self.queue_name, wanted)
            self._drained = 0 < len(self.message_cache) < wanted
        if self.message_cache:
            return True
        if waited:
            return False  # once per call: the worker's loop gets its turn (acks, stopping) between waits
        if not (listening and self.wakeups.wait(self.timeout / 1000)):
            # A delay queue, or no subscription: back off progressively up to worker_timeout, as Dramatiq does.
            self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
            time.sleep(backoff_ms / 1000)
        return False

    def give_back_unheld(self) -> int:
        """Put back at the head of the queue the messages of this process's in-flight set that its worker does
        not hold; returns how many went back.  A message acked meanwhile is left alone (the broker's requeue
        moves only what is still in the in-flight set: :meth:`SyncBroker.do_requeue`).

        Called before a consumer's first fetch, for what an earlier consumer of the queue dropped (without
        this it waited for the reconciler, a time limit and 30 s): the messages its cache held, if its
        ``close`` could not give them back, and those of a fetch whose answer was lost.  Their order went
        with that consumer: they go back at the head of the queue in no particular order.  (What a
        closing consumer holds it gives back itself, in order: :meth:`close`, :meth:`requeue`.)

        A delay queue's consumer thread holds its delayed messages until they are due.  After a lost
        connection it drops them with its consumer (otherwise it requeues them as it closes the consumer):
        a new one starts with none, so its whole in-flight set comes back.  One whose move to its queue
        Redis applied but did not answer is then delivered twice, which an operation's lease and its final
        status make harmless."""
        held = set() if self.delayed else self.broker.held(self.queue_name)
        in_flight = self.broker.client.smembers(in_flight_key(self.broker.namespace, self.broker.broker_id,
                                                              self.queue_name))
        unheld = list({m.decode() for m in in_flight} - held)  # their order was lost with their consumer
        return self.broker.do_requeue(self.queue_name, *unheld) if unheld else 0

    def _cached_ids(self) -> list[str]:
        """The Redis ids of the messages fetched and not handed out, in queue order.  A body that does not
        say its id is left to :meth:`give_back_unheld` of the next consumer."""
        ids = []
        for data in self.message_cache:
            try:
                redis_id = json.loads(data)["options"]["redis_message_id"]
            except (TypeError, ValueError, KeyError, RecursionError):
                continue
            if isinstance(redis_id, str):
                ids.append(redis_id)
        return ids

    def _requeue_with_cache(self, redis_ids: list[str]) -> int:
        """Put ``redis_ids``, then what the cache holds, back at the head of the queue, in one call; the
        cache is emptied once Redis took them (a Redis error leaves it for close to try again)."""
        given = self.broker.do_requeue(self.queue_name, *redis_ids, *self._cached_ids())
        self.message_cache = []
        return given

    def _give_back_cache(self) -> None:
        """Put what the cache holds back at the head of the queue.  Only the cache, without a look at the
        in-flight set: a consumer closing costs no round trip unless it holds messages (a worker stopping
        closes eight, maybe with Redis unreachable).  Redis away, the next consumer's
        :meth:`give_back_unheld`, or the heartbeat's expiry, brings them back."""
        try:
            given = self._requeue_with_cache([])
        except redis.RedisError:
            return
        if given:
            logger.info("Consumer of %s closing: %d message(s) it fetched and did not hand out are back at the head "
                        "of the queue.", self.queue_name, given)

    def close(self):
        self._give_back_cache()
        if self.wakeups is not None:
            self.wakeups.close()
        super().close()

    def check(self, data: bytes) -> Message:
        """``data`` decoded into a message this worker can process, or :class:`BadMessage`."""
        try:
            fields = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise BadMessage(f"not JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise BadMessage(f"a JSON {type(fields).__name__}, not an object")
        for name, kind in _FIELDS.items():
            if not isinstance(fields.get(name), kind) or isinstance(fields.get(name), bool):
                raise BadMessage(f"field {name!r} is missing or not a {kind.__name__}")
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise BadMessage(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
        if q_name(fields["queue_name"]) != q_name(self.queue_name):
            raise BadMessage(f"it names queue {fields['queue_name']!r}, but came from {self.queue_name!r}")
        if fields["actor_name"] not in self.broker.actors:
            raise BadMessage(f"no actor named {fields['actor_name']!r}")
        fields["args"] = tuple(fields["args"])
        return Message(**fields)

    def ack(self, message):
        redis_id = message.options.get("redis_message_id")
        if self.broker.forget_acked(self.queue_name, redis_id):
            # The worker thread acked it with the attempt's last round trip (SyncBroker.queue_ack).
            self.queued_message_ids.discard(message.message_id)
        else:
            try:
                super().ack(message)
            except redis.TimeoutError as exc:
                raise ConnectionClosed(exc) from None
        self.broker.settled(self.queue_name, redis_id)

    def nack(self, message):
        # Acked already (the attempt's end failed after its ack was applied, and its retries are spent):
        # the nack finds nothing to dead-letter, as the operation it names is final.
        redis_id = message.options.get("redis_message_id")
        self.broker.forget_acked(self.queue_name, redis_id)
        try:
            super().nack(message)
        except redis.TimeoutError as exc:
            raise ConnectionClosed(exc) from None
        self.broker.settled(self.queue_name, redis_id)

    def requeue(self, messages):
        messages = list(messages)  # Dramatiq may pass a generator
        if not messages:
            # Dramatiq's consumer thread requeues its delayed messages, often none, before it closes the
            # consumer, and skips the close if the requeue raises: the cache alone must not make it raise.
            self._give_back_cache()
            return
        # A stopping worker requeues what it handed out and did not run, then closes its consumers: what
        # the cache holds was fetched after those, so it goes back behind them, in the same call.
        try:
            self._requeue_with_cache([message.options["redis_message_id"] for message in messages])
        except redis.RedisError as exc:  # any: Dramatiq's shutdown and consumer thread go on only past this one
            raise ConnectionClosed(exc) from None
        for message in messages:
            self.broker.settled(self.queue_name, message.options.get("redis_message_id"))

    def _quarantine(self, data: bytes, error: BadMessage) -> None:
        broker, client = self.broker, self.broker.client
        namespace, queue = broker.namespace, self.queue_name
        acks = in_flight_key(namespace, broker.broker_id, queue)
        messages = f"{namespace}:{queue}.msgs"
        # The body may not say its Redis id, so it is found among the messages this consumer
        # holds (a prefetch's worth at most).
        held = list(client.smembers(acks))
        bodies = client.hmget(messages, held) if held else []
        redis_ids = [rid.decode() for rid, body in zip(held, bodies) if body == data]
        entry = json.dumps({
            "queue": queue, "redis_message_ids": redis_ids, "quarantined_at": time.time(),
            "error": str(error)[:500], "body": data[:_KEEP_BYTES].decode("utf-8", errors="replace"),
        })
        pipe = client.pipeline(transaction=True)
        pipe.lpush(f"{namespace}:quarantine", entry)
        pipe.ltrim(f"{namespace}:quarantine", 0, broker.quarantine_max - 1)
        if redis_ids:
            pipe.srem(acks, *redis_ids)
            pipe.hdel(messages, *redis_ids)
        pipe.execute()
        logger.error("Quarantined a message from queue %r (Redis id %s): %s", queue, ", ".join(redis_ids) or "unknown",
                     error)
