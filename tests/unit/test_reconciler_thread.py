"""The reconciler thread asks for dead workers' messages only once Redis has answered its passes for a
whole heartbeat timeout: after an outage every worker's heartbeat is old, the live ones' too."""

from __future__ import annotations

import types

import redis

from actors.middleware import reconciler_thread


class Passes:
    """The thread's stop event: lets ``count`` passes run, then stops the loop."""

    def __init__(self, count: int):
        self.left = count

    def wait(self, _timeout: float) -> bool:
        self.left -= 1
        return self.left < 0


def test_dead_workers_wait_for_a_heartbeat_timeout_of_answered_passes(monkeypatch):
    times = iter(range(0, 100, 2))  # a pass every 2 s
    asked, failing = [], {5}  # the sixth pass finds Redis down

    def reconcile_exclusively(token, broker, *, dead_workers):
        asked.append(dead_workers)
        if len(asked) - 1 in failing:
            raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(reconciler_thread, "reconcile_exclusively", reconcile_exclusively)
    monkeypatch.setattr(reconciler_thread, "time", types.SimpleNamespace(monotonic=lambda: next(times)))
    thread = reconciler_thread.ReconcilerThread()
    thread._stop = Passes(11)
    thread._loop(types.SimpleNamespace(heartbeat_timeout=8000))

    # 0, 2, 4, 6 s: not yet; 8, 10 s: yes (10 s fails); from 12 s it counts again: 20 s is the next yes.
    assert asked == [False, False, False, False, True, True, False, False, False, False, True]
