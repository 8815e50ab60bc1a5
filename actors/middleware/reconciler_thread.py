"""``ReconcilerThread``: each worker process runs the reconciler (``actors.services.reconciler``)."""

from __future__ import annotations

import logging
import threading
import uuid

import psycopg
import redis
from dramatiq.middleware import Middleware

from ..services import context
from ..services.reconciler import reconcile_exclusively

logger = logging.getLogger(__name__)


class ReconcilerThread(Middleware):
    """Runs a reconciler pass every ``RECONCILE_INTERVAL_S`` in a thread of each worker process, on
    the broker its hooks are given; a Redis lock lets only one of them do it per interval."""

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
        while not self._stop.wait(interval):
            try:
                reconcile_exclusively(token, broker)
            except (redis.RedisError, psycopg.Error) as exc:
                logger.warning("Reconciler pass skipped: %s", context.cfg().redact(str(exc)))
            except Exception:
                logger.exception("Reconciler pass failed.")
