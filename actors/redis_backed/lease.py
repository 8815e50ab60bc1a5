"""Per-operation leases in Redis: an operation runs at most once at a time.

A worker takes ``{namespace}:lease:{operation_id}`` (``SET NX PX``) before an
attempt and releases it after.  While the attempt runs, one daemon thread per
process renews every lease the process holds, every third of the lease's
lifetime, so a live worker keeps its leases however long an attempt takes and
a dead one loses them within ``SYNC_LEASE_MS``.  Release and renewal only touch
a lease that still carries this holder's token.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis

from . import scripts

logger = logging.getLogger(__name__)


class Leases:
    """Parameters:
      client(redis.Redis): the Redis holding the leases.
      namespace(str): key prefix.
      ttl_ms(int): lifetime of a lease between renewals.
    """

    def __init__(self, client: redis.Redis, *, namespace: str, ttl_ms: int):
        self.client = client
        self.namespace = namespace
        self.ttl_ms = ttl_ms
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._renew = client.register_script(scripts.source("renew_leases"))
        self._release = client.register_script(scripts.source("release_lease"))
        self._renewer: threading.Thread | None = None

    def key(self, operation_id: str) -> str:
        return f"{self.namespace}:lease:{operation_id}"

    def acquire(self, operation_id: str) -> str | None:
        """Take the lease; return its token, or ``None`` if another delivery holds it."""
        token = uuid.uuid4().hex
        if not self.client.set(self.key(operation_id), token, nx=True, px=self.ttl_ms):
            return None
        with self._lock:
            self._held[operation_id] = token
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_forever, name="lease-renewer", daemon=True)
                self._renewer.start()
        return token

    def release(self, operation_id: str, token: str, *, pipeline: redis.client.Pipeline | None = None) -> None:
        """Give the lease up if it still carries ``token``; with ``pipeline``, when that is sent
        (see :mod:`actors.redis_backed.scripts`)."""
        with self._lock:
            self._held.pop(operation_id, None)
        if pipeline is None:
            self._release(keys=[self.key(operation_id)], args=[token])
        else:
            scripts.queue(pipeline, self._release, keys=[self.key(operation_id)], args=[token])

    def live(self, operation_ids: list[str]) -> set[str]:
        """Which of ``operation_ids`` have a lease held right now (by anyone)."""
        if not operation_ids:
            return set()
        values = self.client.mget([self.key(op) for op in operation_ids])
        return {op for op, value in zip(operation_ids, values) if value is not None}

    def renew_now(self) -> None:
        with self._lock:
            held = list(self._held.items())
        if not held:
            return
        renewed = set(self._renew(keys=[self.key(op) for op, _ in held], args=[self.ttl_ms, *[t for _, t in held]]))
        for index, (operation_id, _token) in enumerate(held, start=1):
            if index not in renewed:
                # It lapsed (this process stalled longer than the lease): another delivery may now
                # run the operation too.  Its effects are idempotent, so this is logged, not fatal.
                logger.warning("Lost the lease of operation %s while running it.", operation_id)

    def _renew_forever(self) -> None:
        while True:
            time.sleep(self.ttl_ms / 3000)
            try:
                self.renew_now()
            except redis.RedisError as exc:
                logger.warning("Could not renew leases: %s", exc)
