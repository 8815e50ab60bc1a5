"""A real ``dramatiq`` worker with ``SYNC_PROVIDER=rpc``: balances read from a real Anvil node, prices from a
local CoinGecko-style API of this module, holdings checked in PostgreSQL to the last wei and the last digit.

Which chain the node serves matters for prices: ``chaindata.http_prices`` only asks the price API about
the chains it lists in ``PLATFORMS`` / ``NATIVE_COINS`` (1, 10, 56, 137, 8453, 42161, 43114).  So the node
whose holdings must come out priced runs with chain id 1 (Ethereum's, which the price API knows as
``ethereum``); a node with Anvil's own chain id 31337 is read the same way but, by design, stored
unpriced (a price is never guessed).
"""

from __future__ import annotations

import decimal
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

import actors
import actors.worker
from chaindata.base import NATIVE_TOKEN
from storage import operations
from harness.anvil import Anvil, running_anvil, token_args
from harness.fake_http import FakeHttpServer, Reply, Request
from tests.fault_relay import FaultRelay
from tests.waiting import wait_for

pytestmark = pytest.mark.acceptance

#: Enough digits for any uint256 balance times any price: arithmetic of the expected values is exact.
EXACT = decimal.Context(prec=200, traps=[decimal.Inexact, decimal.InvalidOperation])

TOKEN_NAME, TOKEN_SYMBOL, TOKEN_DECIMALS = "Exact Test Token", "EXACT", 18
BIG = 123456789012345678901234567  # ~123456789.01 EXACT, 27 significant digits
NATIVE = 987654321987654321987  # ~987.65 ETH
MORE = 10**27 - BIG  # the second sync sees exactly 10^9 EXACT
NATIVE_AFTER = 5 * 10**18 + 10
#: The price API's answers, as the JSON text it sends (so the numbers are exactly these decimals).
TOKEN_PRICE = "2.5"
ETH_PRICE = "3000.5"

HUGE_NAME, HUGE_SYMBOL = "Huge Supply Token", "HUGE"
HUGE = 123456789012345678901234567890123456789  # 39 digits: 123456789012345678901.234567890123456789 HUGE
HUGE_PRICE = "1.2345"



def enqueue_directly(user_id: str, wallet: str, chain_ids: tuple[int, ...]) -> str:
    """Create a sync operation for chains the producer of this process does not support; return its id.

    This test process is the producer, and its settings were loaded once, at the import of ``actors.worker``,
    with the default SYNC_CHAINS (``settings.get()`` is cached for the whole run), so
    ``actors.request_sync`` refuses a chain such as 31337 that only the worker under test is configured
    for.  The operation is therefore created exactly as ``actors.services.intake._persist_and_enqueue`` does
    once a request is admitted: the ``queued`` audit row through the storage layer, then the message of the
    normal-priority actor through the broker.  (Admission in Redis is skipped: a fresh wallet has nothing
    to deduplicate, and the worker's release of a never-taken in-flight key is a no-op.)
    """
    op_id = str(uuid.uuid4())
    operations.insert_operations(
        [operations.NewOperation(op_id, user_id, wallet.lower(), chain_ids, "normal", "api")], provider="rpc")
    actors.worker.broker.enqueue_batch([actors.worker.broker.get_actor("sync_portfolio").message(op_id)])
    return op_id



def exact_balance(raw: int, decimals: int) -> Decimal:
    return Decimal(raw).scaleb(-decimals, context=EXACT)


class PriceApi(FakeHttpServer):
    """A CoinGecko-style API under ``/api/v3`` knowing ``token_prices`` (contract -> JSON number text) on the
    ``ethereum`` platform and ``coin_prices`` (coin id -> JSON number text); it records each request."""

    def __init__(self, token_prices: dict[str, str], coin_prices: dict[str, str]) -> None:
        super().__init__()
        self.token_prices = token_prices
        self.coin_prices = coin_prices

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/v3"

    def respond(self, request: Request) -> Reply:
        return 200, self.answer(request.path, request.query)

    def answer(self, path: str, query: dict[str, list[str]]) -> str:
        """The JSON text of the answer, built by hand so the numbers go out exactly as written."""
        if path == "/api/v3/simple/token_price/ethereum":
            wanted = query.get("contract_addresses", [""])[0].split(",")
            prices = {a: self.token_prices[a] for a in wanted if a in self.token_prices}
        elif path == "/api/v3/simple/price":
            prices = {c: self.coin_prices[c] for c in query.get("ids", [""])[0].split(",") if c in self.coin_prices}
        else:
            prices = {}
        return "{" + ", ".join(f'{json.dumps(key)}: {{"usd": {price}}}' for key, price in prices.items()) + "}"


@pytest.fixture(scope="module")
def mainnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, dict[str, str]]]:
    """An Anvil serving chain id 1, with the tokens EXACT and HUGE deployed (nobody holds any yet)."""
    with running_anvil(tmp_path_factory.mktemp("anvil"), 1) as node:
        tokens = {
            "exact": node.deploy("TestToken", token_args(TOKEN_NAME, TOKEN_SYMBOL, TOKEN_DECIMALS)),
            "huge": node.deploy("TestToken", token_args(HUGE_NAME, HUGE_SYMBOL, 18)),
        }
        yield node, tokens


@pytest.fixture(scope="module")
def price_api(mainnet: tuple[Anvil, dict[str, str]]) -> Iterator[PriceApi]:
    _node, tokens = mainnet
    with PriceApi({tokens["exact"]: TOKEN_PRICE, tokens["huge"]: HUGE_PRICE}, {"ethereum": ETH_PRICE}) as server:
        yield server


def rpc_worker_env(chain_id: int, node: Anvil, tokens: list[str], price_api: PriceApi) -> dict[str, str]:
    return {"SYNC_PROVIDER": "rpc", "SYNC_CHAINS": str(chain_id), "RPC_URLS": f"{chain_id}={node.url}",
            "RPC_TOKENS": f"{chain_id}={' '.join(tokens)}", "PRICE_API_URL": price_api.base_url}


def check_priced_holdings(op_id: str, user_id: str, wallet: str, token: str, raw_token: int,
                          raw_native: int) -> None:
    """The operation succeeded and the wallet's holdings are exactly ``raw_token`` EXACT and ``raw_native``
    wei on chain 1, priced by the price API, every number exact."""
    op = wait_for(op_id)
    assert op["status"] == "succeeded", op
    assert (op["error_code"], op["error_message"]) == (None, None)
    # (op["provider"] is not checked: the audit row keeps the provider of the producer that inserted it,
    # here the test process's "simulated"; each holding records the worker's, checked below.)

    holdings = {h["token_address"]: h for h in operations.get_holdings(user_id, wallet.lower())}
    assert set(holdings) == {NATIVE_TOKEN, token}  # replaced, never added to
    native, erc20 = holdings[NATIVE_TOKEN], holdings[token]
    assert (native["chain_id"], native["symbol"], native["name"], native["decimals"]) == (1, "ETH", "Ether", 18)
    # Read on chain: symbol(), name(), decimals() of the contract.
    assert (erc20["chain_id"], erc20["symbol"], erc20["name"], erc20["decimals"]) == (
        1, TOKEN_SYMBOL, TOKEN_NAME, TOKEN_DECIMALS)
    assert native["raw_balance"] == raw_native and int(native["raw_balance"]) == raw_native
    assert erc20["raw_balance"] == raw_token and int(erc20["raw_balance"]) == raw_token

    total = Decimal(0)
    for h, price in ((native, ETH_PRICE), (erc20, TOKEN_PRICE)):
        assert h["balance"] == exact_balance(int(h["raw_balance"]), h["decimals"]), h
        assert h["price_usd"] == Decimal(price), h
        assert h["value_usd"] == EXACT.multiply(h["balance"], Decimal(price)), h
        assert (h["price_source"], h["provider"], h["operation_id"]) == ("http", "rpc", op_id), h
        assert h["priced_at"] is not None and h["as_of"] is not None
        total = EXACT.add(total, h["value_usd"])

    assert op["holdings_count"] == 2 and op["unpriced_count"] == 0
    assert op["total_value_usd"] == total, (op["total_value_usd"], total)
    assert op["chain_results"]["1"]["status"] == "ok"
    assert Decimal(op["chain_results"]["1"]["value_usd"]) == total


def test_rpc_worker_stores_exact_balances_and_http_prices(start_worker, mainnet, price_api, user_id, wallet):
    node, tokens = mainnet
    token = tokens["exact"]
    node.mint(token, wallet, BIG)
    node.set_balance(wallet, NATIVE)
    price_api.requests.clear()
    start_worker(env=rpc_worker_env(1, node, [token], price_api))

    # Chain 1 is one of the producer's default chains, so the real API takes the request.
    first = actors.request_sync(user_id, wallet, [1])
    check_priced_holdings(first, user_id, wallet, token, BIG, NATIVE)
    asked = {request.path: request.query for request in price_api.requests}
    assert asked["/api/v3/simple/price"]["ids"] == ["ethereum"]
    assert asked["/api/v3/simple/token_price/ethereum"]["contract_addresses"] == [token]

    # The chain changes; a second sync (forced past the cooldown) replaces the holdings with the new integers.
    node.mint(token, wallet, MORE)
    node.set_balance(wallet, NATIVE_AFTER)
    second = actors.request_sync(user_id, wallet, [1], force=True)
    assert second != first
    check_priced_holdings(second, user_id, wallet, token, BIG + MORE, NATIVE_AFTER)
    assert actors.get_sync(first)["status"] == "succeeded"


def test_a_chain_the_price_api_does_not_list_is_stored_unpriced(start_worker, price_api, tmp_path, user_id, wallet):
    with running_anvil(tmp_path, 31337) as node:
        token = node.deploy("TestToken", token_args(TOKEN_NAME, TOKEN_SYMBOL, TOKEN_DECIMALS))
        node.mint(token, wallet, BIG)
        node.set_balance(wallet, NATIVE)
        price_api.requests.clear()
        start_worker(env=rpc_worker_env(31337, node, [token], price_api))

        op = wait_for(enqueue_directly(user_id, wallet, (31337,)))
        assert op["status"] == "succeeded", op
        holdings = {h["token_address"]: h for h in operations.get_holdings(user_id, wallet.lower())}
        assert {a: int(h["raw_balance"]) for a, h in holdings.items()} == {NATIVE_TOKEN: NATIVE, token: BIG}
        assert (holdings[token]["symbol"], holdings[token]["name"]) == (TOKEN_SYMBOL, TOKEN_NAME)
        for h in holdings.values():
            assert h["balance"] == exact_balance(int(h["raw_balance"]), h["decimals"])
            # Unpriced, never given an invented price.
            assert (h["price_usd"], h["value_usd"], h["price_source"], h["provider"]) == (None, None, None, "rpc")
        assert (op["holdings_count"], op["unpriced_count"], op["total_value_usd"]) == (2, 2, 0)
        assert price_api.requests == []  # chain 31337 has no platform nor coin at the price API

        # A second operation, made the same way, shows the chain's new integers.
        node.mint(token, wallet, MORE)
        node.set_balance(wallet, NATIVE_AFTER)
        second = wait_for(enqueue_directly(user_id, wallet, (31337,)))
        assert second["status"] == "succeeded", second
        holdings = operations.get_holdings(user_id, wallet.lower())
        assert {h["token_address"]: int(h["raw_balance"]) for h in holdings} == {
            NATIVE_TOKEN: NATIVE_AFTER, token: BIG + MORE}
        assert {h["operation_id"] for h in holdings} == {second["id"]}


def test_balances_and_values_keep_every_digit(start_worker, mainnet, price_api, user_id, wallet):
    node, tokens = mainnet
    token = tokens["huge"]
    node.mint(token, wallet, HUGE)
    start_worker(env=rpc_worker_env(1, node, [token], price_api))

    op = wait_for(actors.request_sync(user_id, wallet, [1]))
    assert op["status"] == "succeeded", op
    [h] = operations.get_holdings(user_id, wallet.lower())
    assert int(h["raw_balance"]) == HUGE  # the integer itself is stored whole
    assert h["price_usd"] == Decimal(HUGE_PRICE)
    expected_balance = exact_balance(HUGE, 18)  # 123456789012345678901.234567890123456789
    expected_value = EXACT.multiply(expected_balance, Decimal(HUGE_PRICE))
    assert (h["balance"], h["value_usd"], op["total_value_usd"]) == (expected_balance, expected_value,
                                                                     expected_value)


def test_syncs_through_a_fault_relay_still_succeed_exactly(start_worker, mainnet, price_api, user_id):
    """429 + Retry-After, per-item "header not found" / "backend request failed", single-call "header not
    found" and 413 above 3 items, between the worker and the node: every sync still succeeds, to the wei."""
    node, tokens = mainnet
    token = tokens["exact"]
    wallets = ["0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(6)]
    for n, wallet in enumerate(wallets):
        node.mint(token, wallet, BIG + n)
        node.set_balance(wallet, NATIVE + n)
    with FaultRelay(node.url, rate_limited=0.05, retry_after_s=1, item_errors=0.15, header_not_found=0.15,
                    max_batch=3) as relay:
        start_worker(env=rpc_worker_env(1, node, [token], price_api) | {
            "RPC_URLS": f"1={relay.url}", "SYNC_READ_TRIES": "6", "SYNC_READ_BACKOFF_MS": "10"})
        op_ids = [actors.request_sync(user_id, wallet, [1]) for wallet in wallets]
        for n, (op_id, wallet) in enumerate(zip(op_ids, wallets)):
            check_priced_holdings(op_id, user_id, wallet, token, BIG + n, NATIVE + n)
    assert relay.counts["413"] > 0 and relay.counts["item_error"] + relay.counts["header_not_found"] > 0


class DownPriceApi(PriceApi):
    """A price API answering every request 503."""

    def respond(self, request: Request) -> Reply:
        return 503, "{}"


def test_a_failing_price_api_leaves_the_balances_stored_unpriced(start_worker, mainnet, user_id, wallet):
    node, tokens = mainnet
    token = tokens["exact"]
    node.mint(token, wallet, BIG)
    node.set_balance(wallet, NATIVE)
    with DownPriceApi({}, {}) as down:
        start_worker(env=rpc_worker_env(1, node, [token], down) | {"SYNC_READ_TRIES": "2",
                                                                   "SYNC_READ_BACKOFF_MS": "10"})
        op = wait_for(actors.request_sync(user_id, wallet, [1]))
    assert op["status"] == "succeeded", op
    result = op["chain_results"]["1"]
    assert (result["status"], result["prices"], result["price_error_code"]) == ("ok", "unavailable",
                                                                                "provider_unavailable")
    holdings = {h["token_address"]: h for h in operations.get_holdings(user_id, wallet.lower())}
    assert {a: int(h["raw_balance"]) for a, h in holdings.items()} == {NATIVE_TOKEN: NATIVE, token: BIG}
    assert all(h["price_usd"] is None and h["value_usd"] is None and h["priced_at"] is None
               for h in holdings.values())
    assert (op["holdings_count"], op["unpriced_count"], op["total_value_usd"]) == (2, 2, 0)


def test_priced_at_is_the_price_sources_own_timestamp(start_worker, mainnet, user_id, wallet):
    node, tokens = mainnet
    token = tokens["exact"]
    node.mint(token, wallet, BIG)
    node.set_balance(wallet, NATIVE)
    stamp = 1767225600  # 2026-01-01T00:00:00Z

    class DatedPriceApi(PriceApi):
        def respond(self, request: Request) -> Reply:
            if request.path.endswith("/simple/price"):
                return 200, f'{{"ethereum": {{"usd": {ETH_PRICE}, "last_updated_at": {stamp}}}}}'
            return 200, f'{{"{token}": {{"usd": {TOKEN_PRICE}, "last_updated_at": {stamp + 60}}}}}'

    with DatedPriceApi({}, {}) as prices:
        start_worker(env=rpc_worker_env(1, node, [token], prices))
        op = wait_for(actors.request_sync(user_id, wallet, [1]))
    assert op["status"] == "succeeded", op
    holdings = {h["token_address"]: h for h in operations.get_holdings(user_id, wallet.lower())}
    assert holdings[NATIVE_TOKEN]["priced_at"].timestamp() == stamp
    assert holdings[token]["priced_at"].timestamp() == stamp + 60
