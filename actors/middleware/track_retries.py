"""``TrackRetries``: the reconciler can tell a waiting retry from a lost one."""

from __future__ import annotations

from dramatiq.middleware import Middleware

from ..constants import is_sync_actor
from ..services import context
from ..services.reconciler import message_key


class TrackRetries(Middleware):
    """Remember the Redis id of each retry message of a sync operation (the audit row knows only
    the first message's), so the reconciler can tell a waiting retry from a lost one."""

    def after_enqueue(self, broker, message, delay):
        # Retries and their moves from the delay queue carry a retry count; first sends do not.
        if message.options.get("retries") and is_sync_actor(message.actor_name) and message.args:
            ttl_ms = (delay or 0) + context.cfg().sync.max_age_ms
            broker.client.set(message_key(broker.namespace, str(message.args[0])),
                              message.options["redis_message_id"], px=ttl_ms)
