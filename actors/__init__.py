"""Portfolio sync on Dramatiq: the API the core service calls to ask for syncs.

Importing this package reads no setting, opens no connection and declares no actor: the
settings are read, and the Redis client and broker built, on the first call that needs them
(a bad variable then raises :class:`settings.ConfigError` naming it).  The worker is
``actors.worker``: ``dramatiq actors.worker`` runs it, ``periodiq actors.worker`` its scheduler.

The API::

    request_sync(user_id, wallet_address, chain_ids=None, *, priority="normal", force=False, trigger="api") -> str
    request_syncs([{...}, ...]) -> list[str]
    get_sync(operation_id) -> dict | None
    track_wallet(user_id, wallet_address, chain_ids=None) -> dict
    pause_wallet(user_id, wallet_address) / resume_wallet(...) / untrack_wallet(...) -> bool

The layers of the package, each importing only those below it::

    worker          the composition root: the broker, its middleware, the actors
    middleware/     Dramatiq middleware, one per module
    services/       intake, lifecycle, reconciler, scheduler, tracking, dead letters, observe, metrics
    redis_backed/   broker, consumer, wake-ups, admissions, leases, circuits, events, inspection, Lua
    constants, errors, validation, logs, ids
"""

from __future__ import annotations

from .errors import SyncAttemptFailed, SyncUnavailable
from .services.intake import get_sync, request_sync, request_syncs
from .services.portfolio import get_portfolio, portfolio_as_json
from .services.tracking import pause_wallet, resume_wallet, track_wallet, untrack_wallet
from .validation import InvalidSyncRequest

__all__ = [
    "InvalidSyncRequest", "SyncAttemptFailed", "SyncUnavailable",
    "get_portfolio", "get_sync", "portfolio_as_json", "request_sync", "request_syncs",
    "track_wallet", "pause_wallet", "resume_wallet", "untrack_wallet",
]
