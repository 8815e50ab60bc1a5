"""Price sources: the static table of the simulated provider, and a Redis cache in front of any source."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import redis

from .base import NATIVE_TOKEN, Price, PriceSource
from .chains import get_chain
from .simulated import SIMULATED_PRICES, UNPRICED_TOKEN, token_address, token_list

class StaticPriceTable:
    """Prices of the simulated tokens (``source = "simulated"``); numbered ``SIMn`` extras cost $1."""

    def __init__(self, tokens_per_chain: int = 12):
        self.tokens_per_chain = tokens_per_chain

    def get_prices(self, chain_id: int, token_addresses: list[str]) -> dict[str, Price]:
        now = dt.datetime.now(dt.timezone.utc)
        by_address = {NATIVE_TOKEN: get_chain(chain_id).native_symbol}
        for symbol, _name, _decimals in token_list(chain_id, self.tokens_per_chain):
            by_address[token_address(chain_id, symbol)] = symbol
        prices = {}
        for address in token_addresses:
            symbol = by_address.get(address)
            if symbol is None or symbol == UNPRICED_TOKEN[0]:
                continue
            usd = SIMULATED_PRICES.get(symbol, Decimal("1.00") if symbol.startswith("SIM") else None)
            if usd is not None:
                prices[address] = Price(usd, "simulated", now)
        return prices


class CachedPriceSource:
    """Serve prices from Redis for ``ttl_s`` seconds before asking ``inner`` again.

    Parameters:
      inner(PriceSource): where prices come from on a miss.
      client(redis.Redis): the Redis to cache in.
      namespace(str): prefix of the cache keys.
      ttl_s(int): lifetime of a cached price, in seconds.
      source(str): which kind of source ``inner`` is; part of the keys, so that switching sources
        never serves the other one's prices.
    """

    def __init__(self, inner: PriceSource, client: redis.Redis, *, namespace: str, ttl_s: int, source: str):
        self.inner = inner
        self.client = client
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.source = source

    def _key(self, chain_id: int, address: str) -> str:
        return f"{self.namespace}:price:{self.source}:{chain_id}:{address}"

    def cache_keys(self, chain_id: int, token_addresses: list[str]) -> list[str]:
        """The cache's keys of ``token_addresses``' prices, for a caller that reads them in a round trip it makes
        anyway (a chain read's end) and hands their values to :meth:`from_cached`."""
        return [self._key(chain_id, a) for a in token_addresses]

    def get_prices(self, chain_id: int, token_addresses: list[str]) -> dict[str, Price]:
        if not token_addresses:
            return {}
        return self.from_cached(chain_id, token_addresses, self.client.mget(self.cache_keys(chain_id, token_addresses)))

    def from_cached(self, chain_id: int, token_addresses: list[str], cached: list[bytes | None]) -> dict[str, Price]:
        """The prices of ``token_addresses``, given their keys' ``cached`` values (in order): the cached ones, and
        the missing ones asked of ``inner`` and cached."""
        prices: dict[str, Price] = {}
        missing: list[str] = []
        for address, raw in zip(token_addresses, cached, strict=True):
            if raw is None:
                missing.append(address)
            elif raw != b"":  # b"" caches "no price known", so unknown tokens are not asked for each time
                data = json.loads(raw)
                prices[address] = Price(Decimal(data["usd"]), data["source"], dt.datetime.fromisoformat(data["as_of"]))
        if missing:
            fresh = self.inner.get_prices(chain_id, missing)
            prices.update(fresh)
            pipe = self.client.pipeline(transaction=False)
            for address in missing:
                price = fresh.get(address)
                value = "" if price is None else json.dumps(
                    {"usd": str(price.usd), "source": price.source, "as_of": price.as_of.isoformat()})
                pipe.set(self._key(chain_id, address), value, ex=self.ttl_s)
            pipe.execute()
        return prices
