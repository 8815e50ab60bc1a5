"""RpcProvider against a real Anvil node, with ERC-20s deployed from tests/evm/contracts/*.bin.

Anvil comes from the npm package pinned in tests/evm/package.json; install it
with ``npm ci --prefix tests/evm``.  Every node started here (by ``tests.anvil``)
listens on 127.0.0.1 on a port of its choosing and is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaindata.base import NATIVE_TOKEN, PermanentProviderError, TokenBalance, TransientProviderError
from chaindata.rpc import RpcProvider
from tests.anvil import Anvil, running_anvil, token_args
from tests.fake_http import FakeHttpServer, Reply, Request

pytestmark = pytest.mark.integration

WALLET = "0x00000000000000000000000000000000c0ffee01"  # no key, no history: only what the tests give it
BIG = 123456789012345678901234567
SMALL = 7
NATIVE = 987654321987654321987  # ~987.65 ETH


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    with running_anvil(tmp_path_factory.mktemp("anvil"), 31337) as node:
        yield node


@pytest.fixture(scope="module")
def tokens(anvil: Anvil) -> dict[str, str]:
    """Three tokens on the module's node: WALLET holds BIG of ``big``, SMALL of ``small``, none of ``none``."""
    deployed = {
        "big": anvil.deploy("TestToken", token_args("Big Test Token", "BIG", 18)),
        "small": anvil.deploy("TestToken", token_args("Small Dollar Ünicode", "sUSD", 6)),
        "none": anvil.deploy("TestToken", token_args("Nobody's Token", "NONE", 18)),
    }
    anvil.mint(deployed["big"], WALLET, BIG)
    anvil.mint(deployed["small"], WALLET, SMALL)
    anvil.rpc("anvil_setBalance", WALLET, hex(NATIVE))
    return deployed


@pytest.fixture()
def provider_factory() -> Iterator[Any]:
    """Makes RpcProviders that are closed after the test."""
    made: list[RpcProvider] = []

    def make(urls: dict[int, str], tokens: dict[int, list[str]], timeout_s: float = 5.0) -> RpcProvider:
        made.append(RpcProvider(urls, tokens, timeout_s))
        return made[-1]

    yield make
    for provider in made:
        provider.close()


def test_reads_native_and_token_balances_exactly(anvil: Anvil, tokens: dict[str, str], provider_factory: Any) -> None:
    provider = provider_factory({31337: anvil.url}, {31337: [tokens["big"], tokens["none"], tokens["small"]]})

    holdings = provider.fetch_balances(31337, WALLET)

    assert holdings == [
        TokenBalance(31337, NATIVE_TOKEN, "ETH", "Ether", 18, NATIVE),
        TokenBalance(31337, tokens["big"], "BIG", "Big Test Token", 18, BIG),
        TokenBalance(31337, tokens["small"], "sUSD", "Small Dollar Ünicode", 6, SMALL),
    ]
    assert all(type(h.raw_balance) is int for h in holdings)


@contextlib.contextmanager
def recording_relay(target: str) -> Iterator[FakeHttpServer]:
    """A local HTTP server passing each POST on to ``target``; its ``requests`` are what it relayed."""
    with httpx.Client(timeout=10) as upstream:
        def relay(request: Request) -> Reply:
            answer = upstream.post(target, content=request.body, headers={"content-type": "application/json"})
            return answer.status_code, answer.content

        with FakeHttpServer(relay) as server:
            yield server


def test_one_batched_request_per_fetch(anvil: Anvil, tokens: dict[str, str], provider_factory: Any) -> None:
    token_list = [tokens["big"], tokens["small"], tokens["none"]]
    with recording_relay(anvil.url) as relay:
        provider = provider_factory({31337: relay.url}, {31337: token_list})
        first = provider.fetch_balances(31337, WALLET)
        second = provider.fetch_balances(31337, WALLET)

    bodies = [request.json() for request in relay.requests]
    assert first == second
    assert len(bodies) == 2 and all(isinstance(body, list) for body in bodies)
    # First: eth_chainId, eth_getBalance, 3 balanceOf and 3 x (symbol, decimals, name); then balances only.
    assert [call["method"] for call in bodies[0]] == ["eth_chainId", "eth_getBalance"] + ["eth_call"] * 12
    assert [call["method"] for call in bodies[1]] == ["eth_getBalance"] + ["eth_call"] * 3
    assert {call["params"][0]["data"][:10] for call in bodies[1][1:]} == {"0x70a08231"}


def test_a_wallet_holding_nothing_gets_no_holdings(anvil: Anvil, tokens: dict[str, str], provider_factory: Any) -> None:
    provider = provider_factory({31337: anvil.url}, {31337: list(tokens.values())})

    assert provider.fetch_balances(31337, "0x00000000000000000000000000000000deadbe01") == []


def test_metadata_is_read_once_and_cached(anvil: Anvil, provider_factory: Any) -> None:
    token = anvil.deploy("TestToken", token_args("Cached Token", "CACHE", 18))
    anvil.mint(token, WALLET, 5)
    provider = provider_factory({31337: anvil.url}, {31337: [token]})
    assert provider.fetch_balances(31337, WALLET)[-1].symbol == "CACHE"

    # Rewrite the symbol in storage (slot 1; a short string is stored in place, its length * 2 in the last byte).
    anvil.rpc("anvil_setStorageAt", token, hex(1), "0x" + b"NEW".hex().ljust(62, "0") + f"{2 * 3:02x}")
    anvil.mint(token, WALLET, 1)

    again = provider.fetch_balances(31337, WALLET)[-1]
    assert (again.symbol, again.raw_balance) == ("CACHE", 6)  # balances are fresh, metadata is not re-read
    fresh = provider_factory({31337: anvil.url}, {31337: [token]}).fetch_balances(31337, WALLET)[-1]
    assert fresh.symbol == "NEW"  # proof that the chain did change: a new provider reads it


def test_bytes32_symbol_and_name(anvil: Anvil, provider_factory: Any) -> None:
    token = anvil.deploy("LegacyToken")
    anvil.mint(token, WALLET, 42)
    provider = provider_factory({31337: anvil.url}, {31337: [token]})

    assert provider.fetch_balances(31337, WALLET)[-1] == TokenBalance(31337, token, "LGCY", "Legacy Token", 18, 42)


def test_a_configured_address_without_code_is_a_permanent_error(anvil: Anvil, provider_factory: Any) -> None:
    provider = provider_factory({31337: anvil.url}, {31337: ["0x00000000000000000000000000000000000b0b01"]})

    with pytest.raises(PermanentProviderError) as caught:
        provider.fetch_balances(31337, WALLET)
    assert caught.value.code == "provider_bad_response"
    assert "0x00000000000000000000000000000000000b0b01" in str(caught.value)


def test_the_chain_id_of_the_node_is_honoured(tmp_path: Path, provider_factory: Any) -> None:
    with running_anvil(tmp_path, 8453) as base:
        token = base.deploy("TestToken", token_args("Based Token", "BASED", 8))
        base.mint(token, WALLET, BIG)
        base.rpc("anvil_setBalance", WALLET, hex(3))

        holdings = provider_factory({8453: base.url}, {8453: [token]}).fetch_balances(8453, WALLET)
        assert holdings == [
            TokenBalance(8453, NATIVE_TOKEN, "ETH", "Ether", 18, 3),
            TokenBalance(8453, token, "BASED", "Based Token", 8, BIG),
        ]

        # The same node configured as chain 1 is refused: its balances are not chain 1's.
        misconfigured = provider_factory({1: base.url}, {1: [token]})
        with pytest.raises(PermanentProviderError) as caught:
            misconfigured.fetch_balances(1, WALLET)
        assert caught.value.code == "provider_misconfigured"
        assert "8453" in str(caught.value)


def test_a_chain_without_url_is_unsupported(anvil: Anvil, provider_factory: Any) -> None:
    provider = provider_factory({31337: anvil.url}, {})

    with pytest.raises(PermanentProviderError) as caught:
        provider.fetch_balances(10, WALLET)
    assert caught.value.code == "unsupported_chain"


def test_an_unreachable_node_is_transient_and_its_url_stays_secret(provider_factory: Any) -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        url = f"http://user:hunter2pass@127.0.0.1:{port}/v2/secretkey123456"
        provider = provider_factory({1: url}, {}, timeout_s=2)

        with pytest.raises(TransientProviderError) as caught:
            provider.fetch_balances(1, WALLET)
    assert caught.value.code == "provider_unavailable"
    message = str(caught.value)
    assert message.startswith("chain 1: ")
    for secret in ("hunter2pass", "secretkey123456", str(port)):
        assert secret not in message
