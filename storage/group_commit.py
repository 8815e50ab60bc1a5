"""Group commit: concurrent calls of one statement in a process share one execution.

A worker process runs many attempts at once, and each starts and ends with a
write to the audit trail.  Written one by one, every write is a round trip, a
statement and a commit (a WAL flush) of its own, and PostgreSQL's per-statement
cost, not the work, sets the pace.  :class:`GroupCommit` hands each call to a
writer thread of the process, which writes whatever calls are waiting as one
batch, with one set-based statement:

- a call arriving while the writer is idle is written at once (no timer: a lone
  call waits for nobody); with ``caller_writes_alone``, by the calling thread
  itself, which saves two thread hand-offs (to the writer and back) on the path
  of an idle worker's first write;
- calls arriving while a batch is being written wait for the next batch, which
  takes every call waiting, up to ``max_batch``;
- if a batch fails with an error other than a lost connection, each of its calls
  is written again on its own, so one bad call fails alone.

The writer is a thread of its own rather than one of the calling threads so
that Dramatiq's TimeLimit, which interrupts the worker threads, can never stop
a batch half-way and strand the calls waiting on it.  A call the caller writes
alone is a batch of one, and the calls that arrive meanwhile wait for the writer
thread, which a caller interrupted mid-write still hands them to: only a write
made early in an attempt, far from its time limit (``start_attempt``), opts in.
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
        one result per call, in order; an exception as a call's result fails that call alone (the
        others' are written).  A batch of one is a single call.
      name(str): the writer thread's name.
      max_batch(int): most calls written together. Default 64.
      wait_s(float): how long a call waits to be written before it gives up with :class:`TimeoutError`
        (a transient error: the job is retried).  Should exceed the statement timeout.  Default 60.
      caller_writes_alone(bool): a call that finds nothing being written and nobody waiting is
        written by the calling thread (see the module docstring). Default ``False``.

    ``on_batch``, if set, is called with ``(name, size)`` after each batch is written (for metrics;
    what it raises is logged and ignored).
    """

    def __init__(self, write_batch: Callable[[Sequence[P]], Sequence[R]], *, name: str, max_batch: int = 64,
                 wait_s: float = 60.0, caller_writes_alone: bool = False):
        self.write_batch = write_batch
        self.name = name
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.caller_writes_alone = caller_writes_alone
        self.on_batch: Callable[[str, int], None] | None = None
        self._reset()
        # Threads do not survive a fork, and a lock may be copied held: a forked worker process starts afresh.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Call[P, R]] = []
        self._writer: threading.Thread | None = None
        self._writing = False  # a batch is being written, by the writer or by a caller alone

    def __call__(self, params: P) -> R:
        """Write ``params`` (in a batch with whatever other calls are waiting) and return its result."""
        call: _Call[P, R] = _Call(params)
        alone = False
        try:
            with self._cond:
                if self.caller_writes_alone and not self._writing and not self._waiting:
                    alone = True  # first: the finally below must clear _writing whenever it was set
                    self._writing = True
                else:
                    self._ensure_writer()
                    self._waiting.append(call)
                    self._cond.notify()
            if alone:
                # What interrupts the caller (TimeLimit) goes up as itself; nobody else waits on this write.
                self._write([call])
                self._report(1)
        finally:
            if alone:
                self._written()
        if not alone:
            self._wait(call)
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _wait(self, call: _Call[P, R]) -> None:
        deadline = time.monotonic() + self.wait_s
        while not call.written.wait(_WAIT_SLICE_S):
            if time.monotonic() > deadline:
                with self._cond:
                    if call in self._waiting:
                        self._waiting.remove(call)
                raise TimeoutError(f"the {self.name} write was not done within {self.wait_s:.0f} s")

    def _ensure_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_forever, name=f"{self.name}-writer", daemon=True)
            self._writer.start()

    def _write_forever(self) -> None:
        while True:
            with self._cond:
                while self._writing or not self._waiting:
                    self._cond.wait()
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                self._writing = True
            try:
                self._write_and_report(batch)
            finally:
                self._written()

    def _written(self) -> None:
        """A batch is written: the calls that queued meanwhile are the writer's next batch."""
        with self._cond:
            self._writing = False
            if self._waiting:
                self._cond.notify()

    def _write_and_report(self, batch: list[_Call[P, R]]) -> None:
        try:
            self._write(batch)
        except BaseException:  # noqa: BLE001  (the writer must outlive anything: its calls fail instead)
            logger.exception("The %s writer failed a batch of %d.", self.name, len(batch))
        self._report(len(batch))
        for call in batch:
            call.written.set()

    def _report(self, size: int) -> None:
        if self.on_batch is not None:  # before the callers go on, so what they did next saw it counted
            try:
                self.on_batch(self.name, size)
            except Exception:  # noqa: BLE001  (an observer never stops the writer)
                logger.exception("The %s writer's batch observer failed.", self.name)

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
                    _settle(call, self.write_batch([call.params])[0])
                except Exception as single:  # noqa: BLE001
                    call.error = single
            return
        for call, result in zip(batch, results, strict=True):
            _settle(call, result)


def _settle(call: _Call, result) -> None:
    """A call's result, or its error when write_batch gave an exception as its result."""
    call.result, call.error = (None, result) if isinstance(result, BaseException) else (result, None)
