"""Undecodable messages are quarantined, never allowed to stop a consumer.

Dramatiq's Redis consumer decodes each fetched message as it hands it out; a
body that is not a valid message (corrupt JSON placed in Redis by hand, or by a
foreign producer) raises out of the consumer, which Dramatiq then restarts
with an empty cache: the valid messages fetched in the same batch stay in this
worker's in-flight set, unprocessed, until the worker restarts.

:class:`QuarantiningConsumer` catches the decode error instead: it moves the
raw body to ``{namespace}:quarantine`` (a capped list, shown on the dashboard),
removes it from the queue's bookkeeping, logs it, and carries on with the rest
of the batch.
"""

from __future__ import annotations

import json
import logging
import time

from dramatiq.brokers.redis import _RedisConsumer
from dramatiq.errors import DecodeError

logger = logging.getLogger(__name__)

#: Bytes of a quarantined body kept for inspection.
_KEEP_BYTES = 65536


class QuarantiningConsumer(_RedisConsumer):
    def __next__(self):
        while True:
            try:
                return super().__next__()
            except DecodeError as exc:
                self._quarantine(exc.data, exc.error)

    def _quarantine(self, data: bytes, error: BaseException) -> None:
        broker = self.broker
        namespace, queue = broker.namespace, self.queue_name
        acks = f"{namespace}:__acks__.{broker.broker_id}.{queue}"
        messages = f"{namespace}:{queue}.msgs"
        # The body could not be read, so its Redis id is found by looking for the body among the
        # messages this consumer holds (a prefetch's worth at most).
        client = broker.client
        held = list(client.smembers(acks))
        bodies = client.hmget(messages, held) if held else []
        redis_ids = [rid.decode() for rid, body in zip(held, bodies) if body == data]
        entry = json.dumps({
            "queue": queue, "redis_message_ids": redis_ids, "quarantined_at": time.time(),
            "error": f"{type(error).__name__}: {error}"[:500],
            "body": data[:_KEEP_BYTES].decode("utf-8", errors="replace"),
        })
        pipe = client.pipeline(transaction=True)
        pipe.lpush(f"{namespace}:quarantine", entry)
        pipe.ltrim(f"{namespace}:quarantine", 0, broker.quarantine_max - 1)
        if redis_ids:
            pipe.srem(acks, *redis_ids)
            pipe.hdel(messages, *redis_ids)
        pipe.execute()
        logger.error("Quarantined an undecodable message from queue %r (Redis id %s): %s",
                     queue, ", ".join(redis_ids) or "unknown", error)
