"""Chain-data sources: where balances and prices come from.

``build_provider`` and ``build_price_source`` pick the implementations named by
the settings (``SYNC_PROVIDER``); everything else talks to the interfaces of
``chaindata.base``.
"""

from __future__ import annotations

import redis

import settings as settings_module

from .base import BalanceProvider, PriceSource
from .budget import BudgetLimits, ProviderBudget
from .prices import CachedPriceSource, StaticPriceTable
from .retrying import RetryPolicy


def retry_policy(cfg: settings_module.Settings) -> RetryPolicy:
    """How idempotent reads are retried inside an attempt (``SYNC_READ_*``)."""
    return RetryPolicy(tries=cfg.read_tries, base_s=cfg.read_backoff_ms / 1000, cap_s=cfg.read_backoff_cap_ms / 1000)


def build_provider(cfg: settings_module.Settings, client: redis.Redis) -> BalanceProvider:
    """The balance provider named by ``SYNC_PROVIDER``; real ones spend a rate budget shared through ``client``."""
    if cfg.provider == "simulated":
        from .simulated import SimulatedProvider

        return SimulatedProvider(latency_ms=cfg.simulated_latency_ms, failure_rate=cfg.simulated_failure_rate,
                                 tokens_per_chain=cfg.simulated_tokens_per_chain, seed=cfg.simulated_seed)
    budget = ProviderBudget(client, namespace=cfg.namespace, provider=cfg.provider,
                            limits=BudgetLimits(cfg.provider_requests_per_s, cfg.provider_units_per_s))
    if cfg.provider == "rpc":
        from .rpc import RpcProvider

        return RpcProvider(cfg.rpc_urls, cfg.rpc_tokens, timeout_s=cfg.http_timeout_s, budget=budget,
                           retry=retry_policy(cfg))
    from .alchemy import AlchemyProvider

    return AlchemyProvider(cfg.alchemy_urls, cfg.alchemy_api_key, timeout_s=cfg.http_timeout_s, budget=budget,
                           retry=retry_policy(cfg))


def build_price_source(cfg: settings_module.Settings, client: redis.Redis) -> PriceSource:
    """The price source for ``cfg.provider``, behind a Redis cache of ``PRICE_CACHE_TTL_S`` seconds."""
    inner: PriceSource
    if cfg.provider == "simulated":
        inner, source = StaticPriceTable(cfg.simulated_tokens_per_chain), "simulated"
    elif cfg.price_api_url:
        from .http_prices import HttpPriceSource

        budget = ProviderBudget(client, namespace=cfg.namespace, provider="prices",
                                limits=BudgetLimits(cfg.price_api_requests_per_s))
        inner = HttpPriceSource(cfg.price_api_url, cfg.price_api_key, timeout_s=cfg.http_timeout_s,
                                plan=cfg.price_api_plan, budget=budget, retry=retry_policy(cfg))
        source = "http"
    else:
        inner, source = NoPrices(), "none"
    return CachedPriceSource(inner, client, namespace=cfg.namespace, ttl_s=cfg.price_cache_ttl_s, source=source)


class NoPrices:
    """No price API configured: every token is stored unpriced (never given an invented price)."""

    def get_prices(self, chain_id, token_addresses):
        return {}
