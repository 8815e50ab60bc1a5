"""Exceptions shared by the producer side and the worker side."""

from __future__ import annotations

from dramatiq import Retry


class SyncUnavailable(RuntimeError):
    """Redis or PostgreSQL could not be reached while accepting a request; nothing was accepted."""


class SyncAttemptFailed(Retry):
    """An attempt failed and was recorded in the audit trail.

    Raised by the actor after the audit row says so, so that Dramatiq's Retries
    middleware retries it (``retry=True``) or dead-letters it.  ``delay_ms``
    overrides the exponential backoff (an open circuit says when to come back).
    It is a :class:`dramatiq.Retry`, so the worker does not log it as an
    unexpected error: the actor has logged the attempt already.
    """

    def __init__(self, code: str, message: str, *, retry: bool, delay_ms: int | None = None):
        super().__init__(f"{code}: {message}", delay=delay_ms)
        self.code = code
        self.retry = retry
