"""Where one sync's time goes, step by step: wrappers that time each step, for ``bench.project``.

    .venv/bin/python -m bench.project latency --samples 60 --producer-module bench.trace \\
        --worker-module bench.trace --log /tmp/trace.log
    .venv/bin/python -m bench.project sync --n 1500 --worker-module bench.trace --log /tmp/trace.log
    grep TRACE /tmp/trace.log      # the worker's figures (the producer prints its own on exit)

Imported in the producer (``--producer-module``) it times ``request_sync``'s three steps:
admission, the ``INSERT``, the enqueue.  As the worker module (``--worker-module``) it times, per
sync: the message's wait from its creation to the consumer's wake-up, the fetch, the hand-off to a
worker thread, the lease, ``start_attempt``, the chain reads, ``finish_attempt``, the whole actor,
and the gap between one message's end and the next one's start on a thread (under load, in the
``sync`` mode; in the ``latency`` mode that gap is the idle time between requests).  Each process prints
``TRACE step n p50 mean`` (ms), and the group commit's attempts per batch, when it ends.  Wrapping costs a few microseconds a step.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import statistics
import sys
import threading
import time
import types

from dramatiq.middleware import Middleware

import actors.worker
from actors.redis_backed import wakeup
from actors.services import context, lifecycle, observe
from storage import operations

_steps: dict[str, list[float]] = collections.defaultdict(list)
_local = threading.local()
_last: dict[str, float] = {}
_batch_sizes: dict[str, list[int]] = collections.defaultdict(list)
_local_reported = threading.Event()  # once per process: at worker shutdown, or at exit


def _timed(step: str, function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _steps[step].append(time.perf_counter() - started)
    return wrapper


def report() -> None:
    if _local_reported.is_set():
        return
    _local_reported.set()
    for step, seconds in _steps.items():
        print(f"TRACE {step:<22} n {len(seconds):>5}  p50 {statistics.median(seconds) * 1000:8.2f} ms  "
              f"mean {statistics.mean(seconds) * 1000:8.2f} ms", file=sys.stderr, flush=True)
    for statement, sizes in _batch_sizes.items():
        print(f"TRACE {statement + ' batches':<22} n {len(sizes):>5}  attempts per batch: mean {statistics.mean(sizes):.2f}, "
              f"max {max(sizes)}", file=sys.stderr, flush=True)


# --- producer: request_sync's steps --------------------------------------------------------------
operations.insert_operations = _timed("insert", operations.insert_operations)
actors.worker.broker.send_encoded = _timed("enqueue", actors.worker.broker.send_encoded)
type(context.admissions()).admit_many = _timed("admission", type(context.admissions()).admit_many)

# --- worker: a message's path, and the attempt's steps ------------------------------------------
_wait = wakeup.Wakeups.wait


def _wake_wait(self, timeout_s):
    woken = _wait(self, timeout_s)
    if woken:
        _last["woken"] = time.time()
    return woken


wakeup.Wakeups.wait = _wake_wait
_fetch = actors.worker.broker.do_fetch


def _do_fetch(queue_name, prefetch):
    started = time.time()
    fetched = _fetch(queue_name, prefetch)
    if fetched and not queue_name.endswith(".DQ"):
        _last["fetch_started"], _last["fetched"] = started, time.time()
    return fetched


actors.worker.broker.do_fetch = _do_fetch


class _Stamps(Middleware):
    """First in the list: stamps each message as a worker thread takes it."""

    def before_process_message(self, broker, message):
        now = time.time()
        ended = getattr(_local, "ended", None)
        if ended is not None:
            _steps["gap between messages"].append(time.perf_counter() - ended)
        if "woken" in _last:  # only meaningful for a worker that was idle (the latency mode)
            _steps["created -> woken"].append(_last.pop("woken") - message.message_timestamp / 1000)
        if "fetched" in _last:
            _steps["fetch"].append(_last["fetched"] - _last["fetch_started"])
            _steps["fetched -> thread"].append(now - _last.pop("fetched"))


actors.worker.broker.middleware.insert(0, _Stamps())
actors.worker.broker._hooks = {}  # SyncBroker caches its hooks per signal

for _actor in actors.worker.SYNC_ACTORS.values():
    def _run(operation_id, _fn=_actor.fn):
        try:
            return _fn(operation_id)
        finally:
            _local.ended = time.perf_counter()
    _actor.fn = _timed("actor", _run)

context.leases().__class__.acquire = _timed("lease", context.leases().__class__.acquire)
operations.start_attempt = _timed("start_attempt", operations.start_attempt)
operations.finish_attempt = _timed("finish_attempt", operations.finish_attempt)
# Only lifecycle's own name for the module is replaced: concurrent.futures itself is left alone.
lifecycle.concurrent = types.SimpleNamespace(futures=types.SimpleNamespace(
    wait=_timed("chain reads", concurrent.futures.wait)))


def _count_batch(statement: str, size: int) -> None:
    _batch_sizes[statement].append(size)
    observe.audit_batch(statement, size)


operations.observe_batches(_count_batch)  # the group commit's batches, beside the metric


class _Report(Middleware):
    def before_worker_shutdown(self, broker, worker):
        report()


actors.worker.broker.add_middleware(_Report())
atexit.register(report)
