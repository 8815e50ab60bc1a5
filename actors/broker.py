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

QUEUES = {"high": ("sync_high", 0), "normal": ("sync", 50), "low": ("sync_low", 100)}

#: Errors of the infrastructure itself that are worth another attempt.
TRANSIENT_INFRASTRUCTURE_ERRORS = (psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError,
                                   ConnectionError, TimeoutError)


class SyncBroker(RedisBroker):
    """A RedisBroker that can also enqueue a batch of messages in one pipelined round trip."""

    def enqueue_batch(self, messages: Sequence[Message]) -> list[Message]:
        """Enqueue ``messages`` (no delay) with one Redis round trip; middleware hooks run as for ``enqueue``."""
        dispatch = self.scripts["dispatch"]
        pipe = self.client.pipeline(transaction=False)
        sent = []
        for message in messages:
            message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
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


def make_retry_when(max_attempts: int):
    """Retry only transient failures, until ``max_attempts`` attempts in all were made."""

    def retry_when(retries: int, exception: BaseException) -> bool:
        if retries + 1 >= max_attempts:
            return False
        if isinstance(exception, SyncAttemptFailed):
            return exception.retry
        return isinstance(exception, TRANSIENT_INFRASTRUCTURE_ERRORS)

    return retry_when


def build_broker(cfg: settings_module.Settings) -> SyncBroker:
    from .guard import MessageGuard

    middleware = [
        AgeLimit(max_age=cfg.max_age_ms),
        TimeLimit(time_limit=cfg.time_limit_ms),
        ShutdownNotifications(),
        Retries(max_retries=cfg.max_attempts - 1, min_backoff=cfg.retry_min_backoff_ms,
                max_backoff=cfg.retry_max_backoff_ms, retry_when=make_retry_when(cfg.max_attempts)),
        CurrentMessage(),
        PeriodiqMiddleware(),
        MessageGuard(),
    ]
    # Built here rather than from ``url=``: RedisBroker drops socket options when given a URL,
    # and every Redis call must time out rather than hang a worker thread.
    client = redis.Redis.from_url(cfg.redis_url, socket_timeout=cfg.redis_timeout_s,
                                  socket_connect_timeout=cfg.redis_timeout_s, health_check_interval=30)
    broker = SyncBroker(client=client, namespace=cfg.namespace, middleware=middleware)
    for queue_name, _priority in QUEUES.values():
        broker.declare_queue(queue_name)
    return broker
