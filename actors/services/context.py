"""Process-wide objects, built on first use (after a worker's fork, never at import)."""

from __future__ import annotations

import functools
import os
import socket
import threading

import dramatiq
import dramatiq.broker

import chaindata
import settings as settings_module
from chaindata.tokens.candidates import CandidateTokens
from chaindata.tokens.discovery import Cursor
from chaindata.tokens.lists import TokenLists
from storage import discovery as discovery_store

from ..redis_backed import broker as broker_module
from ..redis_backed.admission import Admissions
from ..redis_backed.chain_reads import ChainReads
from ..redis_backed.circuits import ChainCircuits
from ..redis_backed.lease import Leases
from ..redis_backed.shared_reads import SharedReads

_broker_lock = threading.Lock()


def cfg() -> settings_module.Settings:
    return settings_module.get()


def broker() -> broker_module.SyncBroker:
    """The broker of this process: the one set with ``dramatiq.set_broker`` (the worker's, by
    ``actors.worker``), or else a producer's, with no middleware, built and set on first use.

    Never ``dramatiq.get_broker()`` alone: with no broker set, it builds one of its own, on
    Redis's default address and namespace.
    """
    if dramatiq.broker.global_broker is None:
        with _broker_lock:
            if dramatiq.broker.global_broker is None:
                dramatiq.set_broker(broker_module.connect(cfg()))
    return dramatiq.get_broker()


@functools.cache
def admissions() -> Admissions:
    c = cfg()
    # An in-flight key outlives any legitimate operation: the age limit, every attempt's time
    # limit and every backoff, plus a margin.  Past that it frees a wallet whose job was lost.
    ttl_ms = c.sync.max_age_ms + c.sync.max_attempts * c.sync.time_limit_ms + (c.sync.max_attempts - 1) * c.sync.retry_max_backoff_ms + 60_000
    return Admissions(broker().client, namespace=c.sync.namespace, inflight_ttl_ms=ttl_ms,
                      cooldown_s=c.sync.cooldown_seconds, deadline_ms=int(c.redis.timeout_s * 1000))


@functools.cache
def provider() -> chaindata.BalanceProvider:
    return chaindata.build_provider(cfg(), broker().client)


@functools.cache
def price_source() -> chaindata.CachedPriceSource:
    return chaindata.build_price_source(cfg(), broker().client)


@functools.cache
def token_lists() -> TokenLists:
    """The token lists, loaded on first use; ``ConfigError`` if a list of ``TOKEN_LIST_URLS`` is no valid list."""
    c = cfg()
    lists = TokenLists(c.tokens.list_urls, client=broker().client, namespace=c.sync.namespace,
                       ttl_s=c.tokens.list_ttl_s, timeout_s=c.http.timeout_s)
    lists.start()
    return lists


@functools.cache
def candidate_tokens() -> CandidateTokens:
    """The candidate tokens of each read; Transfer-log discovery runs with the ``rpc`` provider only
    (``alchemy`` lists a wallet's tokens itself, ``simulated`` has no chain)."""
    c = cfg()
    scanners = chaindata.build_discovery_scanners(c, broker().client) if c.sync.provider == "rpc" else {}
    return CandidateTokens(configured=c.rpc.tokens, lists=token_lists(), scanners=scanners,
                           start_blocks=c.tokens.discovery_start_blocks, load=_load_cursor, save=_save_cursor)


def _load_cursor(wallet: str, chain_id: int) -> Cursor | None:
    row = discovery_store.load_cursor(wallet, chain_id)
    if row is None:
        return None
    return Cursor(from_block=row["scanned_from"], to_block=row["scanned_to"], tokens=frozenset(row["tokens"]))


def _save_cursor(wallet: str, chain_id: int, cursor: Cursor) -> None:
    discovery_store.save_cursor(wallet, chain_id, scanned_from=cursor.from_block, scanned_to=cursor.to_block,
                                tokens=cursor.tokens)


@functools.cache
def shared_reads() -> SharedReads:
    c = cfg()
    # The lock is a lease renewed by its live reader, of the operations' lease time: a dead reader's
    # wallets are read again by others as soon as its operations are taken over.
    return SharedReads(broker().client, namespace=c.sync.namespace, window_ms=c.sync.read_share_window_ms,
                       lock_ms=c.sync.lease_ms)


@functools.cache
def leases() -> Leases:
    c = cfg()
    return Leases(broker().client, namespace=c.sync.namespace, ttl_ms=c.sync.lease_ms)


@functools.cache
def circuits() -> ChainCircuits:
    c = cfg()
    return ChainCircuits(broker().client, namespace=c.sync.namespace, provider=provider().name,
                         failure_rate=c.circuit.failure_rate, min_calls=c.circuit.min_calls,
                         window_s=c.circuit.window_s, reset_s=c.circuit.reset_s)


@functools.cache
def chain_reads() -> ChainReads:
    return ChainReads(broker().client, shared=shared_reads(), circuits=circuits())


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
