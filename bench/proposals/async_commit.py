"""Proposal: the worker's audit writes commit asynchronously (``synchronous_commit = off``).

Profiling the no-op pipeline (bench.profile_hotpaths worker --idle) shows the worker threads spend
about 40% of their wall time in ``COMMIT``, waiting for PostgreSQL to flush the WAL: two flushes
per sync (``start_attempt`` and ``finish_attempt``).  With ``synchronous_commit = off`` on the
*worker's* connections only, a commit returns once the WAL is written, not flushed; a PostgreSQL
crash can lose the last ~0.6 s of those commits (never corrupts anything).  What a lost worker
commit means here: the operation looks ``queued``/``running`` again after the crash, its message
already acked; the reconciler (the audit trail is the ground truth) re-enqueues it once its lease
has lapsed, and the sync runs again (finish_attempt is idempotent).  The producer's ``queued``
row keeps synchronous commits: without it a message could point at no row.

Worker module (``dramatiq bench.proposals.async_commit``); patches ``storage.pool`` before any pool opens.
"""

from __future__ import annotations

import storage.pool as _pool

_original = _pool.connection_kwargs


def _connection_kwargs(cfg, *, application_name: str) -> dict:
    kwargs = _original(cfg, application_name=application_name)
    kwargs["options"] = kwargs.get("options", "") + " -c synchronous_commit=off"
    return kwargs


_pool.connection_kwargs = _connection_kwargs

import actors.worker  # noqa: E402,F401  (the broker and the actors, as `dramatiq actors.worker` loads them)
