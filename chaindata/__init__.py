"""Chain-data sources: where balances and prices come from.

``build_provider`` and ``build_price_source`` pick the implementations named by
the settings (``SYNC_PROVIDER``); everything else talks to the interfaces of
``chaindata.base``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from .base import BalanceProvider, PriceSource
from .prices import CachedPriceSource, StaticPriceTable

if TYPE_CHECKING:  # settings imports chaindata.chains, so chaindata needs it for annotations only
    import settings as settings_module


def build_provider(cfg: settings_module.Settings) -> BalanceProvider:
    if cfg.provider == "simulated":
        from .simulated import SimulatedProvider

        return SimulatedProvider(latency_ms=cfg.simulated_latency_ms, failure_rate=cfg.simulated_failure_rate,
                                 tokens_per_chain=cfg.simulated_tokens_per_chain, seed=cfg.simulated_seed)
    if cfg.provider == "rpc":
        from .rpc import RpcProvider

        return RpcProvider(cfg.rpc_urls, cfg.rpc_tokens, timeout_s=cfg.http_timeout_s, chains=cfg.chain_table,
                           multicall_batch=cfg.rpc_multicall_batch, multicall_gas=cfg.rpc_multicall_gas)
    from .alchemy import AlchemyProvider

    return AlchemyProvider(cfg.alchemy_urls, cfg.alchemy_api_key, timeout_s=cfg.http_timeout_s)


def build_price_source(cfg: settings_module.Settings, client: redis.Redis) -> PriceSource:
    """The price source for ``cfg.provider``, behind a Redis cache of ``PRICE_CACHE_TTL_S`` seconds."""
    inner: PriceSource
    if cfg.provider == "simulated":
        inner, source = StaticPriceTable(cfg.simulated_tokens_per_chain), "simulated"
    elif cfg.price_api_url:
        from .http_prices import HttpPriceSource

        inner, source = HttpPriceSource(cfg.price_api_url, cfg.price_api_key, timeout_s=cfg.http_timeout_s), "http"
    else:
        inner, source = NoPrices(), "none"
    return CachedPriceSource(inner, client, namespace=cfg.namespace, ttl_s=cfg.price_cache_ttl_s, source=source)


class NoPrices:
    """No price API configured: every token is stored unpriced (never given an invented price)."""

    def get_prices(self, chain_id, token_addresses):
        return {}
