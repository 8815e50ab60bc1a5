"""Proposal: the worker's pool connections in autocommit mode.

Every storage function runs one statement per pooled connection checkout, yet each checkout costs
three round trips (``BEGIN``, the statement, ``COMMIT``): the statement is a transaction of its own
anyway.  In autocommit mode it is one round trip, with the same durability (the commit is still
synchronous).  Worker module (``dramatiq bench.proposals.autocommit``).
"""

from __future__ import annotations

import storage.pool as _pool

_original = _pool.connection_kwargs


def _connection_kwargs(cfg, *, application_name: str) -> dict:
    return {**_original(cfg, application_name=application_name), "autocommit": True}


_pool.connection_kwargs = _connection_kwargs

import actors  # noqa: E402,F401
