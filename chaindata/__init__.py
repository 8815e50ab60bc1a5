"""Chain-data sources: where balances and prices come from.

``build_provider`` and ``build_price_source`` pick the implementations named by
the settings (``SYNC_PROVIDER``); everything else talks to the interfaces of
``chaindata.base``.
"""

from __future__ import annotations

import redis

import settings as settings_module

import httpx

from .base import BalanceProvider, PriceSource
from .budget import BudgetLimits, ProviderBudget
from .jsonrpc import JsonRpcClient
from .prices import CachedPriceSource, StaticPriceTable
from .retrying import RetryPolicy
from .tokens.discovery import TransferLogScanner


def retry_policy(cfg: settings_module.Settings) -> RetryPolicy:
    """How idempotent reads are retried inside an attempt (``SYNC_READ_*``)."""
    return RetryPolicy(tries=cfg.sync.read_tries, base_s=cfg.sync.read_backoff_ms / 1000,
                       cap_s=cfg.sync.read_backoff_cap_ms / 1000)


def build_provider(cfg: settings_module.Settings, client: redis.Redis) -> BalanceProvider:
    """The balance provider named by ``SYNC_PROVIDER``; real ones spend a rate budget shared through ``client``."""
    if cfg.sync.provider == "simulated":
        from .simulated import SimulatedProvider

        return SimulatedProvider(latency_ms=cfg.simulated.latency_ms, failure_rate=cfg.simulated.failure_rate,
                                 tokens_per_chain=cfg.simulated.tokens_per_chain, seed=cfg.simulated.seed,
                                 retry=retry_policy(cfg))
    budget = _provider_budget(cfg, client)
    if cfg.sync.provider == "rpc":
        from .rpc import RpcProvider

        return RpcProvider(cfg.rpc.urls, cfg.rpc.tokens, timeout_s=cfg.http.timeout_s, chains=cfg.sync.chain_table,
                           multicall_batch=cfg.rpc.multicall_batch, multicall_gas=cfg.rpc.multicall_gas,
                           budget=budget, retry=retry_policy(cfg))
    from .alchemy import AlchemyProvider

    return AlchemyProvider(cfg.alchemy.urls, cfg.alchemy.api_key, timeout_s=cfg.http.timeout_s, budget=budget,
                           retry=retry_policy(cfg))


def _provider_budget(cfg: settings_module.Settings, client: redis.Redis) -> ProviderBudget:
    return ProviderBudget(client, namespace=cfg.sync.namespace, provider=cfg.sync.provider,
                          limits=BudgetLimits(cfg.http.provider_requests_per_s, cfg.http.provider_units_per_s))


def build_discovery_scanners(cfg: settings_module.Settings, client: redis.Redis) -> dict[int, TransferLogScanner]:
    """The Transfer-log scanner of each chain of ``RPC_URLS``, its requests spending the ``rpc`` provider's
    rate budget and retried as the provider's are.  The scanners share one HTTP client, never closed: they
    live as long as the process."""
    http = httpx.Client(timeout=cfg.http.timeout_s)
    budget = _provider_budget(cfg, client)
    return {chain_id: TransferLogScanner(
                JsonRpcClient(http, url, timeout_s=cfg.http.timeout_s, where=f"chain {chain_id}",
                              peer="the rpc node", budget=budget, retry=retry_policy(cfg)),
                chain_id=chain_id, max_range=cfg.tokens.discovery_max_block_range,
                reorg_blocks=cfg.tokens.discovery_reorg_blocks)
            for chain_id, url in cfg.rpc.urls.items()}


def build_price_source(cfg: settings_module.Settings, client: redis.Redis) -> CachedPriceSource:
    """The price source for ``SYNC_PROVIDER``, behind a Redis cache of ``PRICE_CACHE_TTL_S`` seconds."""
    inner: PriceSource
    if cfg.sync.provider == "simulated":
        inner, source = StaticPriceTable(cfg.simulated.tokens_per_chain), "simulated"
    elif cfg.prices.api_url:
        from .http_prices import HttpPriceSource

        budget = ProviderBudget(client, namespace=cfg.sync.namespace, provider="prices",
                                limits=BudgetLimits(cfg.prices.requests_per_s))
        inner = HttpPriceSource(cfg.prices.api_url, cfg.prices.api_key, timeout_s=cfg.http.timeout_s,
                                plan=cfg.prices.plan, budget=budget, retry=retry_policy(cfg))
        source = "http"
    else:
        inner, source = NoPrices(), "none"
    return CachedPriceSource(inner, client, namespace=cfg.sync.namespace, ttl_s=cfg.prices.cache_ttl_s, source=source)


class NoPrices:
    """No price API configured: every token is stored unpriced (never given an invented price)."""

    def get_prices(self, chain_id, token_addresses):
        return {}
