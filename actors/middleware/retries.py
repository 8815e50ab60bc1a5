"""When Dramatiq's ``Retries`` middleware retries a sync: :func:`make_retry_when`, its ``retry_when``."""

from __future__ import annotations

from ..constants import TRANSIENT_INFRASTRUCTURE_ERRORS
from ..errors import SyncAttemptFailed


def make_retry_when(max_attempts: int, infra_max_retries: int):
    """Retry only transient failures.

    An attempt that failed (:class:`SyncAttemptFailed`) was counted in the audit trail, which
    decided whether another one is due; a message that could not even start or finish its
    attempt because Redis or PostgreSQL was away is retried up to ``infra_max_retries`` times
    (with backoff), so a database outage does not use up an operation's attempts.
    """

    def retry_when(retries: int, exception: BaseException) -> bool:
        if isinstance(exception, SyncAttemptFailed):
            return exception.retry and retries < max(max_attempts, infra_max_retries)
        if isinstance(exception, TRANSIENT_INFRASTRUCTURE_ERRORS):
            return retries < infra_max_retries
        return False

    return retry_when
