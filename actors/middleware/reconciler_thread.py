"""``ReconcilerThread``: each worker process runs the reconciler (``actors.services.reconciler``)."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import psycopg
import redis
from dramatiq.middleware import Middleware

from ..services import context
from ..services.reconciler import reconcile_exclusively

logger = logging.getLogger(__name__)


class ReconcilerThread(Middleware):
    """Runs a reconciler pass every ``RECONCILE_INTERVAL_S`` in a thread of each worker process, on
    the broker its hooks are given; a Redis lock lets only one of them do it per interval.  A pass
    recovers dead workers' messages too once this thread's passes have reached Redis for a heartbeat
    timeout.  An outage long enough to age the heartbeats fails a pass as long as
    ``RECONCILE_INTERVAL_S`` is shorter than ``BROKER_HEARTBEAT_TIMEOUT_MS`` (2 s and 8 s by default)."""

    def __init__(self):
        self._stop = threading.Event()

    def after_worker_boot(self, broker, worker):
        self._stop.clear()
        threading.Thread(target=self._loop, args=(broker,), name="reconciler", daemon=True).start()

    def before_worker_shutdown(self, broker, worker):
        self._stop.set()

    def _loop(self, broker) -> None:
        interval = context.cfg().reconciler.interval_s
        token = uuid.uuid4().hex
        # Since when Redis has answered every pass.  Dead workers are recovered only once that is a whole
        # heartbeat timeout: after an outage every worker's heartbeat is old, until its consumers reconnect.
        reachable_since = None
        while not self._stop.wait(interval):
            now = time.monotonic()
            reachable_since = now if reachable_since is None else reachable_since
            try:
                reconcile_exclusively(token, broker,
                                      dead_workers=now - reachable_since >= broker.heartbeat_timeout / 1000)
            except redis.RedisError as exc:
                reachable_since = None
                logger.warning("Reconciler pass skipped: %s", context.cfg().redact(str(exc)))
            except psycopg.Error as exc:
                logger.warning("Reconciler pass skipped: %s", context.cfg().redact(str(exc)))
            except Exception:
                logger.exception("Reconciler pass failed.")
