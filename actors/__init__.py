"""Portfolio sync on Dramatiq: the broker, the actors, and the API the core service calls.

Importing this package configures everything from the environment (see
``settings``): it fails at once with :class:`settings.ConfigError` naming a
bad variable.  ``dramatiq actors`` runs the workers; ``periodiq actors`` the
scheduler.

The API::

    request_sync(user_id, wallet_address, chain_ids=None, *, priority="normal", force=False, trigger="api") -> str
    request_syncs([{...}, ...]) -> list[str]
    get_sync(operation_id) -> dict | None
    track_wallet(user_id, wallet_address, chain_ids=None) -> dict
    pause_wallet(user_id, wallet_address) / resume_wallet(...) / untrack_wallet(...) -> bool
"""

from __future__ import annotations

import dramatiq

import settings as _settings

from . import logs as _logs
from .broker import QUEUES, build_broker
from .cli import preflight as _cli_preflight

_cli_preflight()  # the `portfolio-sync` command: --help, usage and configuration errors end it here (exit 0/2)
_cfg = _settings.get()
_logs.install(_cfg)
# periodiq: the broker and its middleware must exist before any actor is declared.
broker = build_broker(_cfg)
dramatiq.set_broker(broker)

from storage import operations as _operations  # noqa: E402

from . import context as _context  # noqa: E402
from . import lifecycle as _lifecycle  # noqa: E402  (needs the broker above)
from . import observe as _observe  # noqa: E402
from .errors import SyncAttemptFailed, SyncUnavailable  # noqa: E402
from .intake import actor_name, get_sync, request_sync, request_syncs  # noqa: E402
from .validation import InvalidSyncRequest  # noqa: E402

#: One actor per priority, all running the same function; see ``actors.broker`` for why.
SYNC_ACTORS = {
    priority: dramatiq.actor(_lifecycle.sync_portfolio, actor_name=actor_name(priority), queue_name=queue,
                             priority=dramatiq_priority)
    for priority, (queue, dramatiq_priority) in QUEUES.items()
}
sync_portfolio = SYNC_ACTORS["normal"]
_operations.observe_batches(_observe.audit_batch)  # the group commit's batch sizes, as a metric
_context.token_lists()  # a list of TOKEN_LIST_URLS that is no valid token list stops the process here

from . import scheduler as _scheduler  # noqa: E402
from .tracking import pause_wallet, resume_wallet, track_wallet, untrack_wallet  # noqa: E402

#: The periodic actors (run by ``periodiq actors``), declared after the sync actors; see ``actors.scheduler``.
PERIODIC_ACTORS = _scheduler.declare_periodic_actors(_cfg)

__all__ = [
    "InvalidSyncRequest", "SyncAttemptFailed", "SyncUnavailable", "SYNC_ACTORS", "broker",
    "get_sync", "request_sync", "request_syncs", "sync_portfolio",
    "PERIODIC_ACTORS", "track_wallet", "pause_wallet", "resume_wallet", "untrack_wallet",
]
