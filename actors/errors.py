"""Exceptions shared by the producer side and the worker side."""

from __future__ import annotations


class SyncUnavailable(RuntimeError):
    """Redis or PostgreSQL could not be reached while accepting a request; nothing was accepted."""


class SyncAttemptFailed(Exception):
    """An attempt failed and was recorded in the audit trail.

    Raised by the actor after the audit row says so, so that Dramatiq's Retries
    middleware retries it (``retry=True``) or dead-letters it.
    """

    def __init__(self, code: str, message: str, *, retry: bool):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry = retry
