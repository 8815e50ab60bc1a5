"""Chain-data sources: where balances and prices come from.

``build_provider`` and ``build_price_source`` pick the implementations named by
the settings (``SYNC_PROVIDER``); everything else talks to the interfaces of
``chaindata.base``.
"""

from __future__ import annotations

import redis

import settings as settings_module

from .base import BalanceProvider, PriceSource
from .prices import CachedPriceSource, StaticPriceTable


def build_provider(cfg: settings_module.Settings) -> BalanceProvider:
    if cfg.sync.provider == "simulated":
        from .simulated import SimulatedProvider

        return SimulatedProvider(latency_ms=cfg.simulated.latency_ms, failure_rate=cfg.simulated.failure_rate,
                                 tokens_per_chain=cfg.simulated.tokens_per_chain, seed=cfg.simulated.seed)
    if cfg.sync.provider == "rpc":
        from .rpc import RpcProvider

        return RpcProvider(cfg.rpc.urls, cfg.rpc.tokens, timeout_s=cfg.http.timeout_s, chains=cfg.sync.chain_table,
                           multicall_batch=cfg.rpc.multicall_batch, multicall_gas=cfg.rpc.multicall_gas)
    from .alchemy import AlchemyProvider

    return AlchemyProvider(cfg.alchemy.urls, cfg.alchemy.api_key, timeout_s=cfg.http.timeout_s)


def build_price_source(cfg: settings_module.Settings, client: redis.Redis) -> PriceSource:
    """The price source for ``cfg.provider``, behind a Redis cache of ``PRICE_CACHE_TTL_S`` seconds."""
    inner: PriceSource
    if cfg.sync.provider == "simulated":
        inner, source = StaticPriceTable(cfg.simulated.tokens_per_chain), "simulated"
    elif cfg.prices.api_url:
        from .http_prices import HttpPriceSource

        inner, source = HttpPriceSource(cfg.prices.api_url, cfg.prices.api_key, timeout_s=cfg.http.timeout_s), "http"
    else:
        inner, source = NoPrices(), "none"
    return CachedPriceSource(inner, client, namespace=cfg.sync.namespace, ttl_s=cfg.prices.cache_ttl_s, source=source)


class NoPrices:
    """No price API configured: every token is stored unpriced (never given an invented price)."""

    def get_prices(self, chain_id, token_addresses):
        return {}
