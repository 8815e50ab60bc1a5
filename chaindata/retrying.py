"""Retries of idempotent reads inside one attempt: capped, jittered exponential backoff within its deadline.

A read that fails transiently (a timeout, a 5xx, a 429, "header not found")
is tried again here, a few times, before the attempt gives up on it and
Dramatiq's slower backoff takes over.  The waits are "full jitter" (a random
time up to an exponentially growing cap), so workers that failed together do
not come back together; a ``Retry-After`` the server sent is a floor.  No try
starts if its wait would end past the attempt's deadline: the error is raised
then, and the attempt records it.  Built on tenacity.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import tenacity

from chaindata.base import ProviderError
from chaindata.node_errors import RateLimited

T = TypeVar("T")

#: Transient errors that another try within the attempt cannot fix: waiting is the caller's decision.
NOT_RETRIED_HERE = frozenset({"circuit_open", "budget_exhausted", "time_limit_exceeded"})


_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("attempt_deadline", default=float("inf"))


@contextlib.contextmanager
def deadline_scope(deadline: float) -> Iterator[None]:
    """Within the block, :func:`current_deadline` is ``deadline`` (a ``time.monotonic()``): the end of the
    attempt that the thread is working for, which the transport's retries and budget waits respect."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def current_deadline() -> float:
    """The deadline set by the innermost :func:`deadline_scope`, or infinity outside one."""
    return _deadline.get()


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """``tries`` in all (1: no retry), waits of up to ``base_s * 2**n`` seconds, never above ``cap_s``."""

    tries: int = 4
    base_s: float = 0.05
    cap_s: float = 2.0


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.transient and exc.code not in NOT_RETRIED_HERE


def call_with_retries(fn: Callable[[], T], *, policy: RetryPolicy, deadline: float,
                      on_retry: Callable[[ProviderError], None] | None = None) -> T:
    """``fn()``, tried again on transient ``ProviderError`` s as ``policy`` and ``deadline`` allow.

    :param deadline: a ``time.monotonic()`` no wait may end after.
    :param on_retry: called with each error that is about to be retried (for metrics and logs).

    The last error is re-raised as it was when no try is left.  The first try is a plain call: almost every
    call succeeds on it, and tenacity's retry state around it costs a realistic sync's worker about 2% of its
    CPU (docs/performance-history.md); only a retryable error enters the retry loop, which takes that error
    as its first try's outcome.
    """
    try:
        return fn()
    except ProviderError as exc:
        if not _retryable(exc):
            raise
        first: list[BaseException] = [exc]

    def again() -> T:
        if first:
            raise first.pop()
        return fn()

    jitter = tenacity.wait_random_exponential(multiplier=policy.base_s, max=policy.cap_s)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        floor = exc.retry_after_s if isinstance(exc, RateLimited) and exc.retry_after_s else 0.0
        return max(floor, jitter(state))

    def stop(state: tenacity.RetryCallState) -> bool:
        return (state.attempt_number >= policy.tries
                or time.monotonic() + state.upcoming_sleep >= deadline)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            on_retry(state.outcome.exception())

    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception(_retryable), wait=wait, stop=stop,
                                 before_sleep=before_sleep, reraise=True)
    return retrying(again)
