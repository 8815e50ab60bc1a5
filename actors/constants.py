"""Names and values every layer of ``actors`` shares: queues, actor names, defaults.

Queues, by priority (a worker consumes all of them; its local work queue runs
lower ``priority`` numbers first, and each Redis queue has its own consumer, so
a ``high`` request is fetched and started ahead of any backlog of ``low`` ones):

==========  =============  ==================
priority    Redis queue    Dramatiq priority
==========  =============  ==================
high        sync_high      0
normal      sync           50
low         sync_low       100
==========  =============  ==================

One actor per priority runs the same function (``actors.services.lifecycle.sync_portfolio``):
Dramatiq gives an actor one queue and one priority.
"""

from __future__ import annotations

import psycopg
import redis

#: priority -> (Redis queue, Dramatiq priority) of its sync actor.
QUEUES = {"high": ("sync_high", 0), "normal": ("sync", 50), "low": ("sync_low", 100)}

#: The periodic actors' own queue (``actors.services.scheduler``): a backlog of syncs never delays a tick.
PERIODIC_QUEUE = "periodic"

#: Every sync actor's name starts with this; the ``normal`` one is named just this.
SYNC_ACTOR = "sync_portfolio"

#: Errors of the infrastructure itself that are worth another attempt.
TRANSIENT_INFRASTRUCTURE_ERRORS = (psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError,
                                   ConnectionError, TimeoutError)

#: A periodic message that waited longer than this is skipped (and recorded as skipped).
#: periodiq's own default is 30 s; a late tick is harmless, since it selects what is stale when it runs.
PERIODIC_SKIP_DELAY_S = 300

#: Undecodable messages kept in ``{namespace}:quarantine`` unless the broker is told otherwise.
DEFAULT_QUARANTINE_MAX = 10_000


def actor_name(priority: str) -> str:
    """The name of the sync actor of ``priority`` (a key of :data:`QUEUES`)."""
    return SYNC_ACTOR if priority == "normal" else f"{SYNC_ACTOR}_{priority}"


def is_sync_actor(name: str) -> bool:
    """Whether ``name`` is one of the sync actors' names."""
    return name.startswith(SYNC_ACTOR)
