"""HttpPriceSource against a local CoinGecko-style server of this module (on 127.0.0.1, any port)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaindata.base import NATIVE_TOKEN, PermanentProviderError, ProviderError, TransientProviderError
from chaindata.http_prices import HttpPriceSource
from chaindata.node_errors import RateLimited
from chaindata.retrying import RetryPolicy, deadline_scope
from harness.fake_http import FakeHttpServer, Reply, Request

KEY = "cg-pro-key-5b8e1d9a77"
#: The tests of one request's outcome send it once; retries have tests of their own.
ONCE = RetryPolicy(tries=1)
ALPHA = "0xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
BRAVO = "0xb2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
UNLISTED = "0xc3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"

#: The JSON text of each price the server knows, exactly as it sends it.
TOKEN_PRICES = {ALPHA: "0.000001234567890123456789", BRAVO: "1.0001"}
COIN_PRICES = {"ethereum": "3456.789012345678901234567", "polygon-ecosystem-token": "0.2345", "binancecoin": "600"}


def default_token_price(address: str) -> str | None:
    """Besides TOKEN_PRICES, the server knows every address whose last hex digit is even, at ``<int>.5``."""
    if address in TOKEN_PRICES:
        return TOKEN_PRICES[address]
    return f"{int(address, 16) % 1000}.5" if int(address[-1], 16) % 2 == 0 and address != UNLISTED else None


class FakePriceApi(FakeHttpServer):
    """A CoinGecko-style API under ``/api/v3``; ``status``, ``body`` and ``sleep_s`` change how it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.requests.clear()
        self.status = 200
        self.body: str | None = None
        self.sleep_s = 0.0
        self.updated_at: str | None = None  # the JSON text of every entry's last_updated_at, if any
        self.failures: list[tuple[int, dict[str, str]]] = []  # answers (status, headers) sent before the real one

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/v3/"

    def respond(self, request: Request) -> Reply:
        if self.sleep_s:
            self.wait(self.sleep_s)
        if self.failures:
            status, headers = self.failures.pop(0)
            return status, "{}", headers
        return self.status, self.body if self.body is not None else self.answer(request.path, request.query)

    def answer(self, path: str, query: dict[str, list[str]]) -> str:
        """The JSON text answering ``path``: built by hand, so the numbers are sent exactly as written."""
        if path.startswith("/api/v3/simple/token_price/"):
            wanted = query["contract_addresses"][0].split(",")
            prices = {a: p for a in wanted if (p := default_token_price(a)) is not None}
        elif path == "/api/v3/simple/price":
            prices = {c: COIN_PRICES[c] for c in query["ids"][0].split(",") if c in COIN_PRICES}
        else:
            return "{}"
        stamp = "" if self.updated_at is None else f', "last_updated_at": {self.updated_at}'
        return "{" + ", ".join(f'"{key}": {{"usd": {price}{stamp}}}' for key, price in prices.items()) + "}"


@pytest.fixture(scope="module")
def api() -> Iterator[FakePriceApi]:
    with FakePriceApi() as fake:
        yield fake


@pytest.fixture()
def server(api: FakePriceApi) -> FakePriceApi:
    api.reset()
    return api


@pytest.fixture()
def prices(server: FakePriceApi) -> Iterator[HttpPriceSource]:
    source = HttpPriceSource(server.base_url, KEY, timeout_s=5, plan="pro", retry=ONCE)
    yield source
    source.close()


def test_prices_are_exact_decimals_and_unknown_tokens_absent(server: FakePriceApi, prices: HttpPriceSource) -> None:
    before = dt.datetime.now(dt.UTC)
    result = prices.get_prices(1, [ALPHA, BRAVO, UNLISTED, NATIVE_TOKEN])

    assert set(result) == {ALPHA, BRAVO, NATIVE_TOKEN}
    assert {a: str(p.usd) for a, p in result.items()} == {
        ALPHA: "0.000001234567890123456789",
        BRAVO: "1.0001",
        NATIVE_TOKEN: "3456.789012345678901234567",
    }
    assert all(type(p.usd) is Decimal and p.source == "http" for p in result.values())
    assert all(before <= p.as_of <= dt.datetime.now(dt.UTC) and p.as_of.tzinfo is not None for p in result.values())
    paths = [request.path for request in server.requests]
    assert paths == ["/api/v3/simple/price", "/api/v3/simple/token_price/ethereum"]
    assert server.requests[0].query == {"ids": ["ethereum"], "vs_currencies": ["usd"],
                                        "include_last_updated_at": ["true"]}
    assert server.requests[1].query == {"contract_addresses": [f"{ALPHA},{BRAVO},{UNLISTED}"], "vs_currencies": ["usd"],
                                        "include_last_updated_at": ["true"]}


def test_the_key_goes_in_a_header_and_only_if_set(server: FakePriceApi, prices: HttpPriceSource) -> None:
    prices.get_prices(1, [ALPHA])
    keyless = HttpPriceSource(server.base_url, "", timeout_s=5, plan="pro")
    try:
        keyless.get_prices(1, [ALPHA])
    finally:
        keyless.close()

    keyed, keyless_request = server.requests
    assert keyed.headers["x-cg-pro-api-key"] == KEY
    assert "x-cg-pro-api-key" not in keyless_request.headers
    assert KEY not in str(keyed.query) and KEY not in str(keyless_request.query)


def test_addresses_keep_the_case_they_were_given_in(prices: HttpPriceSource) -> None:
    upper = "0x" + ALPHA[2:].upper()

    assert set(prices.get_prices(1, [upper])) == {upper}


@pytest.mark.parametrize(("chain_id", "platform", "coin"), [
    (10, "optimistic-ethereum", "ethereum"),
    (56, "binance-smart-chain", "binancecoin"),
    (137, "polygon-pos", "polygon-ecosystem-token"),
    (8453, "base", "ethereum"),
    (42161, "arbitrum-one", "ethereum"),
    (43114, "avalanche", "avalanche-2"),
])
def test_each_chain_asks_its_platform_and_coin(server: FakePriceApi, prices: HttpPriceSource, chain_id: int,
                                               platform: str, coin: str) -> None:
    result = prices.get_prices(chain_id, [NATIVE_TOKEN, ALPHA])

    assert [(request.path, request.query.get("ids")) for request in server.requests] == [
        ("/api/v3/simple/price", [coin]), (f"/api/v3/simple/token_price/{platform}", None)]
    assert (NATIVE_TOKEN in result) == (coin in COIN_PRICES)  # avalanche-2 is unknown to this server: no price


def test_a_chain_without_platform_gets_no_price_and_no_request(server: FakePriceApi, prices: HttpPriceSource) -> None:
    assert prices.get_prices(31337, [NATIVE_TOKEN, ALPHA]) == {}
    assert prices.get_prices(1, []) == {}
    assert server.requests == []


@pytest.mark.parametrize("entry", ['{"usd": NaN}', '{"usd": -1.5}', '{"usd": "12"}', '{"usd": true}', '{"eur": 3}',
                                   '{"usd": null}', '7'])
def test_unusable_prices_are_absent(server: FakePriceApi, prices: HttpPriceSource, entry: str) -> None:
    server.body = f'{{"{ALPHA}": {entry}, "{BRAVO}": {{"usd": 2}}}}'

    result = prices.get_prices(1, [ALPHA, BRAVO])
    assert set(result) == {BRAVO} and result[BRAVO].usd == Decimal(2)


def test_prices_of_tokens_not_asked_for_are_ignored(server: FakePriceApi, prices: HttpPriceSource) -> None:
    server.body = f'{{"{ALPHA}": {{"usd": 1}}, "{BRAVO}": {{"usd": 2}}}}'

    assert set(prices.get_prices(1, [ALPHA])) == {ALPHA}


def test_more_than_100_addresses_are_batched(server: FakePriceApi, prices: HttpPriceSource) -> None:
    addresses = [f"0x{i:040x}" for i in range(1, 251)]

    result = prices.get_prices(1, addresses)

    batches = [request.query["contract_addresses"][0].split(",") for request in server.requests]
    assert [len(batch) for batch in batches] == [100, 100, 50]
    assert sum(batches, []) == addresses
    assert set(result) == {a for a in addresses if int(a[-1], 16) % 2 == 0}
    assert result[addresses[1]].usd == Decimal("2.5")


@pytest.mark.parametrize(("status", "body", "error_class", "code"), [
    (429, "{}", RateLimited, "provider_rate_limited"),
    (503, "{}", TransientProviderError, "provider_unavailable"),
    (401, '{"error": "bad key"}', PermanentProviderError, "provider_rejected"),
    (404, "{}", PermanentProviderError, "provider_rejected"),
    (200, "<html>not json</html>", PermanentProviderError, "provider_bad_response"),
    (200, "[1, 2]", PermanentProviderError, "provider_bad_response"),
])
def test_failures_map_to_errors_without_url_or_key(server: FakePriceApi, prices: HttpPriceSource, status: int,
                                                   body: str, error_class: type[ProviderError], code: str) -> None:
    server.status, server.body = status, body

    with pytest.raises(ProviderError) as caught:
        prices.get_prices(1, [ALPHA])
    assert type(caught.value) is error_class and caught.value.code == code
    assert_secret_kept(caught.value)


def test_a_slow_api_is_a_transient_timeout(server: FakePriceApi) -> None:
    server.sleep_s = 3.0
    slow = HttpPriceSource(server.base_url, KEY, timeout_s=0.5, retry=ONCE)
    started = time.monotonic()
    try:
        with pytest.raises(TransientProviderError) as caught:
            slow.get_prices(1, [ALPHA])
    finally:
        slow.close()
    assert time.monotonic() - started < 2.5
    assert caught.value.code == "provider_timeout"
    assert_secret_kept(caught.value)
    server.release()  # let the sleeping handler go


def test_a_base_url_that_is_no_http_url_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        HttpPriceSource(f"ftp://user:{KEY}@example.invalid/", KEY, timeout_s=1)
    assert KEY not in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=30))
def test_any_price_comes_back_exactly(api: FakePriceApi, price: Decimal) -> None:
    api.reset()
    api.body = f'{{"{ALPHA}": {{"usd": {price}}}}}'  # str(Decimal) is valid JSON number text, exponents included
    source = HttpPriceSource(api.base_url, KEY, timeout_s=5)
    try:
        assert source.get_prices(1, [ALPHA])[ALPHA].usd == price
    finally:
        source.close()


def test_demo_and_pro_keys_go_in_their_own_header(server: FakePriceApi) -> None:
    for plan, header, other in (("demo", "x-cg-demo-api-key", "x-cg-pro-api-key"),
                                ("pro", "x-cg-pro-api-key", "x-cg-demo-api-key")):
        source = HttpPriceSource(server.base_url, KEY, timeout_s=5, plan=plan)
        try:
            source.get_prices(1, [ALPHA])
        finally:
            source.close()
        assert server.requests[-1].headers[header] == KEY and other not in server.requests[-1].headers


@pytest.mark.parametrize(("base_url", "plan"), [("https://pro-api.coingecko.com/api/v3", "pro"),
                                                ("https://api.coingecko.com/api/v3/", "demo"),
                                                ("http://127.0.0.1:9/api/v3", "demo")])
def test_auto_plan_follows_the_base_url(base_url: str, plan: str) -> None:
    source = HttpPriceSource(base_url, KEY, timeout_s=1)
    assert source.plan == plan
    source.close()


def test_an_unknown_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="pro, demo or auto"):
        HttpPriceSource("https://api.coingecko.com/api/v3", KEY, timeout_s=1, plan="enterprise")


def test_the_sources_own_timestamp_dates_each_price(server: FakePriceApi, prices: HttpPriceSource) -> None:
    server.updated_at = "1767225600"  # 2026-01-01T00:00:00Z
    result = prices.get_prices(1, [ALPHA, NATIVE_TOKEN])
    assert {p.as_of for p in result.values()} == {dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}


@pytest.mark.parametrize("stamp", ["null", '"yesterday"', "1.5e9", "-1", "99999999999", "true"])
def test_an_unusable_timestamp_falls_back_to_the_fetch_time(server: FakePriceApi, prices: HttpPriceSource,
                                                           stamp: str) -> None:
    server.updated_at = stamp
    before = dt.datetime.now(dt.UTC)
    result = prices.get_prices(1, [ALPHA])
    assert before <= result[ALPHA].as_of <= dt.datetime.now(dt.UTC)


def test_429_with_retry_after_is_waited_out_then_retried(server: FakePriceApi) -> None:
    server.failures = [(429, {"Retry-After": "1"}), (503, {})]
    source = HttpPriceSource(server.base_url, KEY, timeout_s=5, retry=RetryPolicy(tries=3, base_s=0.01, cap_s=0.05))
    started = time.monotonic()
    try:
        with deadline_scope(time.monotonic() + 10):
            result = source.get_prices(1, [ALPHA])
    finally:
        source.close()
    assert result[ALPHA].usd == Decimal(TOKEN_PRICES[ALPHA])
    assert len(server.requests) == 3
    assert time.monotonic() - started >= 1.0  # the server's Retry-After, not our shorter backoff


def test_no_retry_starts_that_would_end_past_the_deadline(server: FakePriceApi) -> None:
    server.failures = [(429, {"Retry-After": "5"})]
    source = HttpPriceSource(server.base_url, KEY, timeout_s=5, retry=RetryPolicy(tries=3))
    started = time.monotonic()
    try:
        with deadline_scope(time.monotonic() + 2), pytest.raises(TransientProviderError) as caught:
            source.get_prices(1, [ALPHA])
    finally:
        source.close()
    assert caught.value.code == "provider_rate_limited" and len(server.requests) == 1
    assert time.monotonic() - started < 1


def assert_secret_kept(error: ProviderError) -> None:
    message = str(error)
    assert KEY not in message and "127.0.0.1" not in message and "/api/v3" not in message, message
    assert message.startswith("chain 1: ")


@pytest.mark.parametrize("text", ["1e999999", "1e16", "1e-41", "1." + "1" * 70])
def test_a_price_beyond_any_real_one_leaves_the_token_unpriced(api: FakePriceApi, text: str) -> None:
    """One absurd price must not fail the chain in exact arithmetic (Overflow, Inexact): no price at all."""
    api.reset()
    api.body = f'{{"{ALPHA}": {{"usd": {text}}}, "{BRAVO}": {{"usd": 1.0001}}}}'
    source = HttpPriceSource(api.base_url, KEY, timeout_s=5, retry=ONCE)
    try:
        assert {address: price.usd for address, price in source.get_prices(1, [ALPHA, BRAVO]).items()} == {
            BRAVO: Decimal("1.0001")}
    finally:
        source.close()
