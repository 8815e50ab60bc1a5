"""Group commit: concurrent calls of one statement in a process share one execution.

A worker process runs many attempts at once, and each starts and ends with a
write to the audit trail.  Written one by one, every write is a round trip, a
statement and a commit (a WAL flush) of its own, and PostgreSQL's per-statement
cost, not the work, sets the pace.  :class:`GroupCommit` hands each call to a
writer thread of the process, which writes whatever calls are waiting as one
batch, with one set-based statement:

- a call arriving while the writer is idle is written at once (no timer: a lone
  call waits for nobody);
- calls arriving while a batch is being written wait for the next batch, which
  takes every call waiting, up to ``max_batch``;
- if a batch fails with an error other than a lost connection, each of its calls
  is written again on its own, so one bad call fails alone.

The writer is a thread of its own rather than one of the calling threads so
that Dramatiq's TimeLimit, which interrupts the worker threads, can never stop
a batch half-way and strand the calls waiting on it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import psycopg

logger = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")

#: How often a waiting caller wakes up: a caller is interruptible (Dramatiq's TimeLimit) only between waits.
_WAIT_SLICE_S = 0.5


class _Call(Generic[P, R]):
    __slots__ = ("params", "result", "error", "written")

    def __init__(self, params: P):
        self.params = params
        self.result: R | None = None
        # Until the writer says otherwise: a batch that dies of something unforeseen fails its calls.
        self.error: BaseException | None = RuntimeError("the write was interrupted")
        self.written = threading.Event()


class GroupCommit(Generic[P, R]):
    """Parameters:
      write_batch(callable): writes the parameters of a batch of calls with one statement and returns
        one result per call, in order.  A batch of one is a single call.
      name(str): the writer thread's name.
      max_batch(int): most calls written together. Default 64.
      wait_s(float): how long a call waits to be written before it gives up with :class:`TimeoutError`
        (a transient error: the job is retried).  Should exceed the statement timeout.  Default 60.

    ``on_batch``, if set, is called with ``(name, size)`` after each batch is written (for metrics;
    what it raises is logged and ignored).
    """

    def __init__(self, write_batch: Callable[[Sequence[P]], Sequence[R]], *, name: str, max_batch: int = 64,
                 wait_s: float = 60.0):
        self.write_batch = write_batch
        self.name = name
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.on_batch: Callable[[str, int], None] | None = None
        self._reset()
        # Threads do not survive a fork, and a lock may be copied held: a forked worker process starts afresh.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Call[P, R]] = []
        self._writer: threading.Thread | None = None

    def __call__(self, params: P) -> R:
        """Write ``params`` (in a batch with whatever other calls are waiting) and return its result."""
        call: _Call[P, R] = _Call(params)
        with self._cond:
            self._ensure_writer()
            self._waiting.append(call)
            self._cond.notify()
        deadline = time.monotonic() + self.wait_s
        while not call.written.wait(_WAIT_SLICE_S):
            if time.monotonic() > deadline:
                with self._cond:
                    if call in self._waiting:
                        self._waiting.remove(call)
                raise TimeoutError(f"the {self.name} write was not done within {self.wait_s:.0f} s")
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _ensure_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_forever, name=f"{self.name}-writer", daemon=True)
            self._writer.start()

    def _write_forever(self) -> None:
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
            try:
                self._write(batch)
            except BaseException:  # noqa: BLE001  (the writer must outlive anything: its calls fail instead)
                logger.exception("The %s writer failed a batch of %d.", self.name, len(batch))
            if self.on_batch is not None:  # before the callers go on, so what they did next saw it counted
                try:
                    self.on_batch(self.name, len(batch))
                except Exception:  # noqa: BLE001  (an observer never stops the writer)
                    logger.exception("The %s writer's batch observer failed.", self.name)
            for call in batch:
                call.written.set()

    def _write(self, batch: list[_Call[P, R]]) -> None:
        try:
            results = self.write_batch([c.params for c in batch])
        except psycopg.OperationalError as exc:  # the connection or the server: every call shares it
            for call in batch:
                call.error = exc
            return
        except Exception as exc:  # noqa: BLE001  (one call's data, most likely: find which)
            if len(batch) == 1:
                batch[0].error = exc
                return
            logger.warning("A batch of %d %s writes failed (%s); writing them one by one.",
                           len(batch), self.name, type(exc).__name__)
            for call in batch:
                try:
                    call.result, call.error = self.write_batch([call.params])[0], None
                except Exception as single:  # noqa: BLE001
                    call.error = single
            return
        for call, result in zip(batch, results, strict=True):
            call.result, call.error = result, None
