"""Tracked wallets: the wallets the scheduler keeps fresh (``actors.services.scheduler``).

A wallet is tracked when its owner first requests a sync of it, or with
:func:`track_wallet`.  A paused wallet is kept (with its history) but not
scheduled; an untracked one is forgotten until it is tracked or requested
again.  Every function validates like ``request_sync`` (raising
:class:`InvalidSyncRequest`) and raises :class:`SyncUnavailable` if
PostgreSQL does not answer.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from storage import scheduling

from ..errors import SyncUnavailable
from ..validation import SyncRequest, validate_request
from . import context


def track_wallet(user_id: str, wallet_address: str, chain_ids: Iterable[int] | None = None) -> dict:
    """Track ``wallet_address`` of ``user_id`` on ``chain_ids`` (``None``: every chain of ``SYNC_CHAINS``).

    Tracking a wallet already tracked replaces its chains and resumes it if it was paused.
    Returns ``{user_id, wallet_address, chain_ids, status, added_at, created}``; ``created`` is
    ``False`` if it was tracked already.  A wallet never synced is stale: the next tick requests it.
    """
    request = _validate(user_id, wallet_address, chain_ids)
    return _call(scheduling.track_wallet, request.user_id, request.wallet_address, request.chain_ids)


def pause_wallet(user_id: str, wallet_address: str) -> bool:
    """Stop scheduling syncs of a tracked wallet (its own requests still sync it); ``False`` if not tracked."""
    request = _validate(user_id, wallet_address)
    return _call(scheduling.set_wallet_status, request.user_id, request.wallet_address, "paused") is not None


def resume_wallet(user_id: str, wallet_address: str) -> bool:
    """Schedule a paused wallet again; ``False`` if not tracked."""
    request = _validate(user_id, wallet_address)
    return _call(scheduling.set_wallet_status, request.user_id, request.wallet_address, "active") is not None


def untrack_wallet(user_id: str, wallet_address: str) -> bool:
    """Stop tracking a wallet (holdings and audit trail are kept); ``False`` if it was not tracked.
    A later ``request_sync`` of it tracks it again: to keep it quiet, pause it instead."""
    request = _validate(user_id, wallet_address)
    return _call(scheduling.untrack_wallet, request.user_id, request.wallet_address)


def _validate(user_id: object, wallet_address: object, chain_ids: Iterable[int] | None = None) -> SyncRequest:
    return validate_request(user_id, wallet_address, chain_ids, supported_chains=context.cfg().sync.chains)


def _call(fn, *args):
    try:
        return fn(*args)
    except psycopg.OperationalError as exc:
        raise SyncUnavailable(f"PostgreSQL did not answer: {context.cfg().redact(str(exc))}") from None


__all__ = ["track_wallet", "pause_wallet", "resume_wallet", "untrack_wallet"]
