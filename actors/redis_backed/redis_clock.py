"""Redis's clock, read without a round trip: the one clock the hosts of a deployment share in Redis.

Every host may run its own wall clock, fast, slow, or stepped by NTP.  Wherever two hosts compare times
through Redis (a producer's admission deadline, Dramatiq's heartbeats and dead-worker maintenance, the
reconciler's "which workers are alive"), they compare times of Redis's clock instead.

:class:`RedisClock` asks Redis for ``TIME`` once, remembers the offset from this process's monotonic
clock (which no NTP step moves), and answers ``now_ms()`` from that offset; it asks again every
``refresh_s`` (so a drift or a step of Redis's own clock is followed) and whenever a caller saw a
sign that the offset is wrong (:meth:`invalidate`).  The error of a reading is at most half the round
trip of the ``TIME`` it was calibrated with; a calibration whose round trip took longer than
``max_round_trip_ms`` (a stalled Redis) is not kept.
"""

from __future__ import annotations

import threading
import time

import redis


def monotonic_ms() -> float:
    """This process's monotonic clock, in milliseconds."""
    return time.monotonic() * 1000


class RedisClock:
    """Parameters:
      client(redis.Redis): the Redis whose clock is read.
      refresh_s(float): how long an offset is trusted before ``TIME`` is asked again.  Default 30.
      max_round_trip_ms(float): a ``TIME`` slower than this is not used to calibrate.  Default 250.
    """

    def __init__(self, client: redis.Redis, *, refresh_s: float = 30.0, max_round_trip_ms: float = 250.0):
        self.client = client
        self.refresh_s = refresh_s
        self.max_round_trip_ms = max_round_trip_ms
        self._offset_ms: float | None = None
        self._calibrated_at = float("-inf")
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        """Redis's time now, in milliseconds since the epoch.  Raises ``redis.RedisError`` only when
        no calibration ever succeeded and Redis does not answer."""
        if self._offset_ms is None or time.monotonic() - self._calibrated_at > self.refresh_s:
            try:
                self.calibrate()
            except redis.RedisError:
                if self._offset_ms is None:
                    raise  # nothing to go on: the caller's Redis call would fail the same way
        return int(monotonic_ms() + self._offset_ms)

    def calibrate(self) -> None:
        """Ask Redis for ``TIME`` and keep the offset, unless the round trip was too slow to trust."""
        sent = monotonic_ms()
        seconds, microseconds = self.client.time()
        received = monotonic_ms()
        if received - sent > self.max_round_trip_ms and self._offset_ms is not None:
            return
        with self._lock:
            self._offset_ms = seconds * 1000 + microseconds / 1000 - (sent + received) / 2
            self._calibrated_at = time.monotonic()

    def observe(self, redis_ms: float, *, sent_ms: float, received_ms: float) -> None:
        """Recalibrate from a time Redis returned with a reply (``sent_ms``/``received_ms`` on this
        process's monotonic clock, :func:`monotonic_ms`), if the round trip was short enough."""
        if received_ms - sent_ms <= self.max_round_trip_ms:
            with self._lock:
                self._offset_ms = redis_ms - (sent_ms + received_ms) / 2
                self._calibrated_at = time.monotonic()

    def invalidate(self) -> None:
        """Ask ``TIME`` again at the next reading."""
        self._calibrated_at = float("-inf")

