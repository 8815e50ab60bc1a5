"""USD prices from a CoinGecko-style HTTP API (``PRICE_API_URL``, ``PRICE_API_KEY``).

ERC-20s are priced by contract with ``GET {base}/simple/token_price/{platform}``
(at most ``MAX_ADDRESSES_PER_REQUEST`` contracts a request), a chain's
native coin with ``GET {base}/simple/price?ids={coin}``.  Chains without a
platform or coin listed below get no price: a price is never guessed, and a
token the API leaves out (or prices as NaN, negative or not a number) is
simply absent from the result.  Prices are parsed as exact ``Decimal``s,
never through ``float``.  HTTP failures map to errors as in
:mod:`chaindata.jsonrpc`; neither the URL nor the key is in any message.

Each price is dated by the API's own ``last_updated_at`` (asked for with
``include_last_updated_at=true``; Unix seconds) when it gives one, else by
the time of our request.  CoinGecko has two kinds of key: a *pro* key goes in
header ``x-cg-pro-api-key`` to ``https://pro-api.coingecko.com/api/v3``, a
*demo* key in ``x-cg-demo-api-key`` to ``https://api.coingecko.com/api/v3``;
each is refused by the other's base URL, so ``plan`` says which one the key
is (``auto``: pro if the base URL's host starts with ``pro-api.``).  A 429
pauses the shared budget for its ``Retry-After``; requests are retried within
the attempt's deadline like every read.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from chaindata.base import NATIVE_TOKEN, PermanentProviderError, Price
from chaindata.budget import ProviderBudget, send_within_budget
from chaindata.jsonrpc import request_json
from chaindata.retrying import RetryPolicy, call_with_retries, current_deadline

#: The API's asset platform of each chain id, for token prices.
PLATFORMS: dict[int, str] = {
    1: "ethereum",
    10: "optimistic-ethereum",
    56: "binance-smart-chain",
    137: "polygon-pos",
    8453: "base",
    42161: "arbitrum-one",
    43114: "avalanche",
}
#: The API's coin id of each chain's native coin.
NATIVE_COINS: dict[int, str] = {
    1: "ethereum",
    10: "ethereum",
    56: "binancecoin",
    137: "polygon-ecosystem-token",
    8453: "ethereum",
    42161: "ethereum",
    43114: "avalanche-2",
}
#: Contracts per token-price request, so the query string stays within what servers accept.
MAX_ADDRESSES_PER_REQUEST = 100
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
#: The header each kind of key goes in.
KEY_HEADERS = {"pro": "x-cg-pro-api-key", "demo": "x-cg-demo-api-key"}
#: A ``last_updated_at`` outside these Unix seconds is no date (2009-01-01 .. 2100-01-01).
_SANE_EPOCH = (1_230_768_000, 4_102_444_800)


class HttpPriceSource:
    """``PriceSource`` reading a CoinGecko-style API.

    :param base_url: the API's base URL, e.g. ``https://pro-api.coingecko.com/api/v3`` (a trailing slash is ignored).
    :param api_key: sent in the header of its ``plan``; ``""`` sends no key.
    :param timeout_s: timeout, in seconds, of every HTTP request.
    :param plan: ``"pro"``, ``"demo"`` or ``"auto"`` (see the module docstring).
    :param budget: the price API's rate budget shared by all workers (None: none).
    :param retry: how requests are retried within an attempt.

    Safe to share between threads.  Call :meth:`close` to release its connections.
    """

    source = "http"

    def __init__(self, base_url: str, api_key: str, timeout_s: float, *, plan: str = "auto",
                 budget: ProviderBudget | None = None, retry: RetryPolicy = RetryPolicy()):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("the price API base URL must start with http:// or https://")
        if plan == "auto":
            plan = "pro" if (parts.hostname or "").startswith("pro-api.") else "demo"
        if plan not in KEY_HEADERS:
            raise ValueError("the price API plan must be pro, demo or auto")
        self.plan = plan
        self._base = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._budget = budget
        self._retry = retry
        headers = {"accept": "application/json"}
        if api_key:
            headers[KEY_HEADERS[plan]] = api_key
        self._http = httpx.Client(timeout=timeout_s, headers=headers)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def get_prices(self, chain_id: int, token_addresses: list[str]) -> dict[str, Price]:
        """The USD price of each of ``token_addresses`` (0x addresses or ``NATIVE_TOKEN``) that the API knows.

        Addresses match in any case; the result is keyed by the strings given.
        Strings that are no address are ignored.
        """
        given: dict[str, list[str]] = {}  # lower-case address -> the strings given for it
        for address in token_addresses:
            if _ADDRESS.fullmatch(address.lower()):
                given.setdefault(address.lower(), []).append(address)

        usd: dict[str, tuple[Decimal, dt.datetime | None]] = {}
        coin = NATIVE_COINS.get(chain_id)
        if NATIVE_TOKEN in given and coin is not None:
            answer = self._get(chain_id, "/simple/price", {"ids": coin, "vs_currencies": "usd",
                                                           "include_last_updated_at": "true"})
            price = _usd(answer.get(coin))
            if price is not None:
                usd[NATIVE_TOKEN] = price, _updated_at(answer.get(coin))
        platform = PLATFORMS.get(chain_id)
        contracts = [a for a in given if a != NATIVE_TOKEN]
        if platform is not None:
            for start in range(0, len(contracts), MAX_ADDRESSES_PER_REQUEST):
                chunk = contracts[start:start + MAX_ADDRESSES_PER_REQUEST]
                answer = self._get(chain_id, f"/simple/token_price/{platform}",
                                   {"contract_addresses": ",".join(chunk), "vs_currencies": "usd",
                                    "include_last_updated_at": "true"})
                asked = set(chunk)
                for key, entry in answer.items():
                    price = _usd(entry)
                    if isinstance(key, str) and key.lower() in asked and price is not None:
                        usd[key.lower()] = price, _updated_at(entry)

        fetched_at = dt.datetime.now(dt.UTC)
        return {original: Price(usd=value, source=self.source, as_of=updated_at or fetched_at)
                for address, (value, updated_at) in usd.items() for original in given[address]}

    def _get(self, chain_id: int, path: str, params: dict[str, str]) -> dict[str, Any]:
        return call_with_retries(lambda: self._get_once(chain_id, path, params), policy=self._retry,
                                 deadline=current_deadline())

    def _get_once(self, chain_id: int, path: str, params: dict[str, str]) -> dict[str, Any]:
        answer = send_within_budget(
            self._budget, lambda: request_json(self._http, "GET", self._base + path, params=params,
                                               timeout_s=self._timeout_s, where=f"chain {chain_id}",
                                               peer="the price API"))
        if not isinstance(answer, dict):
            raise PermanentProviderError("provider_bad_response",
                                         f"chain {chain_id}: bad answer from the price API: not a JSON object")
        return answer


#: Decimal exponents a price may have, in USD: from 1e-40 (the dust of a meme coin) to 1e15. Outside them an
#: answer is garbage, and it would be valued into figures no column should hold (or overflow exact arithmetic).
PRICE_EXPONENTS = (-40, 15)
#: Significant digits a price may have; price APIs send at most a few tens.
MAX_PRICE_DIGITS = 60


def _updated_at(entry: Any) -> dt.datetime | None:
    """The entry's ``last_updated_at`` (Unix seconds) as a UTC datetime, or None if absent or no sane date."""
    value = entry.get("last_updated_at") if isinstance(entry, dict) else None
    if type(value) is not int or not _SANE_EPOCH[0] <= value <= _SANE_EPOCH[1]:
        return None
    return dt.datetime.fromtimestamp(value, dt.UTC)


def _usd(entry: Any) -> Decimal | None:
    """The ``usd`` of one answer entry, or None if it has no usable one (missing, not a number, NaN, negative,
    or beyond any real price: see :data:`PRICE_EXPONENTS`)."""
    value = entry.get("usd") if isinstance(entry, dict) else None
    if type(value) is int:  # not bool, which JSON true would be
        value = Decimal(value)
    if not (isinstance(value, Decimal) and value.is_finite() and value >= 0):
        return None
    if value and not (PRICE_EXPONENTS[0] <= value.adjusted() <= PRICE_EXPONENTS[1]
                      and len(value.as_tuple().digits) <= MAX_PRICE_DIGITS):
        return None
    return value
