"""Process-wide objects, built on first use (after a worker's fork, never at import)."""

from __future__ import annotations

import functools
import os
import socket

import dramatiq

import chaindata
import settings as settings_module

from .admission import Admissions
from .circuits import ChainCircuits
from .lease import Leases


def cfg() -> settings_module.Settings:
    return settings_module.get()


@functools.cache
def admissions() -> Admissions:
    c = cfg()
    # An in-flight key outlives any legitimate operation: the age limit, every attempt's time
    # limit and every backoff, plus a margin.  Past that it frees a wallet whose job was lost.
    ttl_ms = c.max_age_ms + c.max_attempts * c.time_limit_ms + (c.max_attempts - 1) * c.retry_max_backoff_ms + 60_000
    return Admissions(dramatiq.get_broker().client, namespace=c.namespace, inflight_ttl_ms=ttl_ms,
                      cooldown_s=c.cooldown_seconds, deadline_ms=int(c.redis_timeout_s * 1000))


@functools.cache
def provider() -> chaindata.BalanceProvider:
    return chaindata.build_provider(cfg(), dramatiq.get_broker().client)


@functools.cache
def price_source() -> chaindata.PriceSource:
    return chaindata.build_price_source(cfg(), dramatiq.get_broker().client)


@functools.cache
def leases() -> Leases:
    c = cfg()
    return Leases(dramatiq.get_broker().client, namespace=c.namespace, ttl_ms=c.lease_ms)


@functools.cache
def circuits() -> ChainCircuits:
    c = cfg()
    return ChainCircuits(dramatiq.get_broker().client, namespace=c.namespace, provider=provider().name,
                         failure_rate=c.circuit_failure_rate, min_calls=c.circuit_min_calls,
                         window_s=c.circuit_window_s, reset_s=c.circuit_reset_s)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
