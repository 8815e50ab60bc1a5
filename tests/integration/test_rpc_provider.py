"""RpcProvider against a real Anvil node, with ERC-20s deployed from tests/evm/contracts/*.bin.

Anvil comes from the npm package pinned in tests/evm/package.json; install it
with ``npm ci --prefix tests/evm``.  Every node started here (by ``harness.anvil``)
listens on 127.0.0.1 on a port of its choosing and is stopped by its pid.

The module's node has Multicall3 at its canonical address; the tests marked
``both_paths`` also run with a chain table whose Multicall3 address holds no
code, which sends the provider down its plain-``eth_call`` fallback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi import encode

from chaindata.base import NATIVE_TOKEN, PermanentProviderError, TokenBalance, TokenError, TransientProviderError
from settings.chains import DEFAULT_CHAINS
from chaindata.rpc import RpcProvider
from harness.anvil import BURN_GAS, MULTICALL3, REVERT, Anvil, recording_relay, running_anvil, token_args
from harness.fake_http import FakeHttpServer, Reply, Request

pytestmark = pytest.mark.integration

WALLET = "0x00000000000000000000000000000000c0ffee01"  # no key, no history: only what the tests give it
BIG = 123456789012345678901234567
SMALL = 7
NATIVE = 987654321987654321987  # ~987.65 ETH
#: Chain 31337 as the defaults know it, but with its Multicall3 at an address without code.
NO_MULTICALL = {**DEFAULT_CHAINS,
                31337: dataclasses.replace(DEFAULT_CHAINS[31337], multicall3="0x" + "00" * 19 + "77")}
both_paths = pytest.mark.parametrize("path", ["multicall", "plain"])


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    with running_anvil(tmp_path_factory.mktemp("anvil"), 31337) as node:
        node.install_multicall3()
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
    """Makes RpcProviders that are closed after the test; ``path="plain"`` hides Multicall3 from them."""
    made: list[RpcProvider] = []

    def make(urls: dict[int, str], tokens: dict[int, list[str]], timeout_s: float = 5.0, *,
             path: str = "multicall", **options: Any) -> RpcProvider:
        chains = NO_MULTICALL if path == "plain" else DEFAULT_CHAINS
        made.append(RpcProvider(urls, tokens, timeout_s, chains=chains, **options))
        return made[-1]

    yield make
    for provider in made:
        provider.close()


def block_tags(bodies: list[Any]) -> set[str]:
    """The block named by every eth_call and eth_getBalance of ``bodies``."""
    items = [item for body in bodies for item in (body if isinstance(body, list) else [body])]
    return {item["params"][1] for item in items if item["method"] in ("eth_call", "eth_getBalance")}


@both_paths
def test_reads_native_and_token_balances_exactly(anvil: Anvil, tokens: dict[str, str], provider_factory: Any,
                                                 path: str) -> None:
    provider = provider_factory({31337: anvil.url}, {31337: [tokens["big"], tokens["none"], tokens["small"]]},
                                path=path)

    read = provider.read_chain(31337, WALLET)

    assert read.balances == [
        TokenBalance(31337, NATIVE_TOKEN, "ETH", "Ether", 18, NATIVE),
        TokenBalance(31337, tokens["big"], "BIG", "Big Test Token", 18, BIG),
        TokenBalance(31337, tokens["small"], "sUSD", "Small Dollar Ünicode", 6, SMALL),
    ]
    assert all(type(h.raw_balance) is int for h in read.balances)
    assert (read.chain_id, list(read.token_errors), read.truncated) == (31337, [], False)
    assert read.block_number == int(anvil.rpc("eth_blockNumber"), 16)


def test_candidate_tokens_are_read_besides_the_configured_ones(anvil: Anvil, tokens: dict[str, str],
                                                               provider_factory: Any) -> None:
    provider = provider_factory({31337: anvil.url}, {31337: [tokens["big"]]})

    read = provider.read_chain(31337, WALLET, [tokens["small"].upper().replace("0X", "0x"), tokens["big"]])

    assert [b.token_address for b in read.balances] == [NATIVE_TOKEN, tokens["big"], tokens["small"]]


def test_a_multicall_read_is_three_requests_then_two_all_at_one_block(anvil: Anvil, tokens: dict[str, str],
                                                                      provider_factory: Any) -> None:
    token_list = [tokens["big"], tokens["small"], tokens["none"]]
    with recording_relay(anvil.url) as relay:
        provider = provider_factory({31337: relay.url}, {31337: token_list})
        first = provider.read_chain(31337, WALLET)
        first_bodies = [request.json() for request in relay.requests]
        relay.requests.clear()
        anvil.rpc("evm_mine")
        second = provider.read_chain(31337, WALLET)
        second_bodies = [request.json() for request in relay.requests]

    assert first.balances == second.balances and second.block_number == first.block_number + 1
    assert (first.requests, second.requests) == (len(first_bodies), len(second_bodies)) == (3, 2)
    # First: the block, the chain id and Multicall3's code; then one aggregate3 of the balances (native and
    # three tokens) and one of the metadata of the two tokens held.  Then the block and the balances only.
    assert sorted(call["method"] for call in first_bodies[0]) == ["eth_blockNumber", "eth_chainId", "eth_getCode"]
    assert [call["method"] for call in second_bodies[0]] == ["eth_blockNumber"]
    for bodies in (first_bodies[1:], second_bodies[1:]):
        assert all(call["method"] == "eth_call" and call["params"][0]["to"] == MULTICALL3
                   for body in bodies for call in body)
    assert block_tags(first_bodies) == {hex(first.block_number)}
    assert block_tags(second_bodies) == {hex(second.block_number)}


def test_calls_are_chunked_by_size_and_gas_budget(anvil: Anvil, tokens: dict[str, str],
                                                  provider_factory: Any) -> None:
    many = [tokens["big"], tokens["small"], tokens["none"]] * 1 + [
        anvil.deploy("TestToken", token_args(f"Chunk {i}", f"CH{i}", i)) for i in range(6)]
    for token in many[3:]:
        anvil.mint(token, WALLET, 1000)
    with recording_relay(anvil.url) as relay:
        by_size = provider_factory({31337: relay.url}, {31337: many}, multicall_batch=4)
        read = by_size.read_chain(31337, WALLET)
        bodies = [request.json() for request in relay.requests]
        relay.requests.clear()
        by_gas = provider_factory({31337: relay.url}, {31337: many}, multicall_gas=150_000)  # 3 calls a chunk
        again = by_gas.read_chain(31337, WALLET)
        gas_bodies = [request.json() for request in relay.requests]

    assert read.balances == again.balances and len(read.balances) == 1 + 2 + 6
    # 10 balance calls in chunks of 4: 3 aggregate3; 8 tokens held x 3 metadata calls: 6 aggregate3.
    assert [len(body) for body in bodies[1:]] == [3, 6]
    assert [len(body) for body in gas_bodies[1:]] == [4, 8]
    assert {call["params"][0]["gas"] for body in gas_bodies[1:] for call in body} == {hex(150_000)}
    assert len(block_tags(bodies)) == len(block_tags(gas_bodies)) == 1


def test_the_plain_fallback_checks_for_multicall3_once(anvil: Anvil, tokens: dict[str, str],
                                                       provider_factory: Any) -> None:
    with recording_relay(anvil.url) as relay:
        provider = provider_factory({31337: relay.url}, {31337: [tokens["big"], tokens["small"]]}, path="plain")
        first = provider.read_chain(31337, WALLET)
        later = [provider.read_chain(31337, WALLET) for _ in range(2)]
        bodies = [request.json() for request in relay.requests]

    assert all(read.balances == first.balances for read in later)
    methods = [call["method"] for body in bodies for call in body]
    assert methods.count("eth_getCode") == 1 and methods.count("eth_chainId") == 1
    # No aggregate3 anywhere: balances and metadata are plain calls of each token, at the read's block.
    assert {call["params"][0]["to"] for body in bodies for call in body if call["method"] == "eth_call"} == {
        tokens["big"], tokens["small"]}
    assert [read.requests for read in [first, *later]] == [3, 2, 2]


@both_paths
def test_a_wallet_holding_nothing_gets_no_holdings(anvil: Anvil, tokens: dict[str, str], provider_factory: Any,
                                                   path: str) -> None:
    provider = provider_factory({31337: anvil.url}, {31337: list(tokens.values())}, path=path)

    read = provider.read_chain(31337, "0x00000000000000000000000000000000deadbe01")
    assert (read.balances, list(read.token_errors)) == ([], [])


def test_metadata_is_read_once_and_cached(anvil: Anvil, provider_factory: Any) -> None:
    token = anvil.deploy("TestToken", token_args("Cached Token", "CACHE", 18))
    anvil.mint(token, WALLET, 5)
    provider = provider_factory({31337: anvil.url}, {31337: [token]})
    assert provider.read_chain(31337, WALLET).balances[-1].symbol == "CACHE"

    # Rewrite the symbol in storage (slot 1; a short string is stored in place, its length * 2 in the last byte).
    anvil.rpc("anvil_setStorageAt", token, hex(1), "0x" + b"NEW".hex().ljust(62, "0") + f"{2 * 3:02x}")
    anvil.mint(token, WALLET, 1)

    again = provider.read_chain(31337, WALLET).balances[-1]
    assert (again.symbol, again.raw_balance) == ("CACHE", 6)  # balances are fresh, metadata is not re-read
    fresh = provider_factory({31337: anvil.url}, {31337: [token]}).read_chain(31337, WALLET).balances[-1]
    assert fresh.symbol == "NEW"  # proof that the chain did change: a new provider reads it


@both_paths
def test_bytes32_symbol_and_name(anvil: Anvil, provider_factory: Any, path: str) -> None:
    token = anvil.deploy("LegacyToken")
    anvil.mint(token, WALLET, 42)
    provider = provider_factory({31337: anvil.url}, {31337: [token]}, path=path)

    assert provider.read_chain(31337, WALLET).balances[-1] == TokenBalance(31337, token, "LGCY", "Legacy Token",
                                                                           18, 42)


@both_paths
def test_a_token_failing_alone_never_fails_the_chain(anvil: Anvil, tokens: dict[str, str], provider_factory: Any,
                                                     path: str) -> None:
    no_code = "0x00000000000000000000000000000000000b0b01"
    reverting = anvil.deploy("ScriptedToken")
    anvil.script(reverting, "balanceOf(address)", mode=REVERT)
    provider = provider_factory({31337: anvil.url}, {31337: [no_code, tokens["big"], reverting]}, path=path)

    read = provider.read_chain(31337, WALLET)

    assert [b.token_address for b in read.balances] == [NATIVE_TOKEN, tokens["big"]]
    assert [(e.token_address, e.code) for e in read.token_errors] == [(no_code, "bad_answer"),
                                                                      (reverting, "reverted")]
    assert "got 0 bytes" in read.token_errors[0].message


@both_paths
def test_hostile_answers_become_per_token_errors(anvil: Anvil, tokens: dict[str, str], provider_factory: Any,
                                                 path: str) -> None:
    def scripted(**answers: Any) -> str:
        token = anvil.deploy("ScriptedToken")
        for signature, answer in answers.items():
            mode = answer if isinstance(answer, int) else 0
            anvil.script(token, signature.replace("_", "()") if signature != "balanceOf" else "balanceOf(address)",
                         answer if isinstance(answer, bytes) else b"", mode)
        return token

    one = encode(["uint256"], [1])
    short = scripted(balanceOf=one[:31])
    long = scripted(balanceOf=one + one)
    huge_symbol = scripted(balanceOf=one, symbol_=encode(["string"], ["X" * 2000]), decimals_=encode(["uint8"], [2]))
    not_utf8 = scripted(balanceOf=one, symbol_=encode(["bytes"], [b"\xff\xfeBAD"]), decimals_=encode(["uint8"], [2]))
    controls = scripted(balanceOf=one, symbol_=encode(["string"], ["EV\x00I\x1bL\u202e"]),
                        name_=encode(["string"], ["Name\nwith\tcontrols"]), decimals_=encode(["uint8"], [1]))
    lying_length = scripted(balanceOf=one, symbol_=(32).to_bytes(32, "big") + (2**200).to_bytes(32, "big"),
                            decimals_=encode(["uint256"], [2**255]))
    provider = provider_factory({31337: anvil.url},
                                {31337: [short, long, tokens["big"], huge_symbol, not_utf8, controls, lying_length]},
                                path=path)

    read = provider.read_chain(31337, WALLET)

    held = {b.token_address: b for b in read.balances}
    assert held[tokens["big"]].raw_balance == BIG
    assert (held[huge_symbol].symbol, held[huge_symbol].decimals) == ("", 2)
    assert (held[not_utf8].symbol, held[not_utf8].decimals) == ("", 2)
    assert (held[controls].symbol, held[controls].name, held[controls].decimals) == ("EVIL", "Namewithcontrols", 1)
    assert (held[lying_length].symbol, held[lying_length].decimals) == ("", None)
    assert short not in held and long not in held
    assert [(e.token_address, e.code) for e in read.token_errors] == [
        (short, "bad_answer"), (long, "bad_answer"), (huge_symbol, "bad_metadata"), (not_utf8, "bad_metadata"),
        (lying_length, "bad_metadata"), (lying_length, "no_decimals")]
    for error in read.token_errors:
        assert len(error.message) <= 300 and error.message.isprintable()


def test_a_call_taking_the_whole_chunk_down_is_found_by_halving(anvil: Anvil, tokens: dict[str, str],
                                                                provider_factory: Any) -> None:
    burner = anvil.deploy("ScriptedToken")
    anvil.script(burner, "balanceOf(address)", mode=BURN_GAS)
    others = [anvil.deploy("TestToken", token_args(f"Victim {i}", f"V{i}", 18)) for i in range(5)]
    for token in others:
        anvil.mint(token, WALLET, 10**18 + 1)
    # With a small budget, the burner's 63/64 of the gas leaves too little for the calls after it.
    provider = provider_factory({31337: anvil.url}, {31337: [burner, *others]}, multicall_gas=400_000)

    read = provider.read_chain(31337, WALLET)

    assert [b.token_address for b in read.balances] == [NATIVE_TOKEN, *others]
    assert all(b.raw_balance == 10**18 + 1 for b in read.balances[1:])
    assert [(e.token_address, e.code) for e in read.token_errors] == [(burner, "reverted")]


def test_the_chain_id_of_the_node_is_honoured(tmp_path: Path, provider_factory: Any) -> None:
    with running_anvil(tmp_path, 8453) as base:
        base.install_multicall3()
        token = base.deploy("TestToken", token_args("Based Token", "BASED", 8))
        base.mint(token, WALLET, BIG)
        base.rpc("anvil_setBalance", WALLET, hex(3))

        read = provider_factory({8453: base.url}, {8453: [token]}).read_chain(8453, WALLET)
        assert read.balances == [
            TokenBalance(8453, NATIVE_TOKEN, "ETH", "Ether", 18, 3),
            TokenBalance(8453, token, "BASED", "Based Token", 8, BIG),
        ]

        # The same node configured as chain 1 is refused: its balances are not chain 1's.
        misconfigured = provider_factory({1: base.url}, {1: [token]})
        with pytest.raises(PermanentProviderError) as caught:
            misconfigured.read_chain(1, WALLET)
        assert caught.value.code == "provider_misconfigured"
        assert "8453" in str(caught.value) and "RPC_URLS" in str(caught.value)


def test_a_chain_without_url_or_metadata_is_unsupported(anvil: Anvil, provider_factory: Any) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        provider_factory({31337: anvil.url}, {}).read_chain(10, WALLET)
    assert caught.value.code == "unsupported_chain" and "RPC_URLS" in str(caught.value)

    with pytest.raises(PermanentProviderError) as caught:
        provider_factory({999: anvil.url}, {}).read_chain(999, WALLET)
    assert caught.value.code == "unsupported_chain" and "CHAIN_METADATA" in str(caught.value)


def test_a_wallet_with_a_wrong_checksum_is_refused(anvil: Anvil, provider_factory: Any) -> None:
    provider = provider_factory({31337: anvil.url}, {})
    with pytest.raises(PermanentProviderError) as caught:
        provider.read_chain(31337, "0xcA11bde05977b3631167028862bE2a173976Ca11")
    assert caught.value.code == "invalid_wallet" and "EIP-55" in str(caught.value)
    assert provider.read_chain(31337, "0xCA11BDE05977B3631167028862BE2A173976CA11").chain_id == 31337


def test_an_unreachable_node_is_transient_and_its_url_stays_secret(provider_factory: Any) -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        url = f"http://user:hunter2pass@127.0.0.1:{port}/v2/secretkey123456"
        provider = provider_factory({1: url}, {}, timeout_s=2)

        with pytest.raises(TransientProviderError) as caught:
            provider.read_chain(1, WALLET)
    assert caught.value.code == "provider_unavailable"
    message = str(caught.value)
    assert message.startswith("chain 1: ")
    for secret in ("hunter2pass", "secretkey123456", str(port)):
        assert secret not in message


def test_token_errors_name_the_token(anvil: Anvil, provider_factory: Any) -> None:
    """The TokenError of a token is about that token only (not the wallet, not the endpoint)."""
    reverting = anvil.deploy("ScriptedToken")
    anvil.script(reverting, "balanceOf(address)", mode=REVERT)
    read = provider_factory({31337: anvil.url}, {31337: [reverting]}).read_chain(31337, WALLET)
    assert read.token_errors == [TokenError(reverting, "reverted", "balanceOf(): the call reverted")]


@pytest.mark.parametrize("method, answer", [
    ("eth_blockNumber", "0xnothex"),
    ("eth_blockNumber", "0x1" + "0" * 70),  # past any uint256
    ("eth_getCode", 12345),
    ("eth_chainId", None),
    ("eth_call", "0x" + "ab" * 33),  # no aggregate3 result: every call, the native balance included, is unreadable
    ("eth_call", "\u0000\u001b[2J" + "x" * 100_000),  # control characters, and long
])
def test_a_hostile_node_is_a_permanent_error_of_its_chain(anvil: Anvil, tokens: dict[str, str], provider_factory: Any,
                                                          method: str, answer: Any) -> None:
    """A node answering ``method`` with ``answer`` (everything else relayed to Anvil) fails the chain with
    ``provider_bad_response``, whose message quotes none of the answer."""
    with httpx.Client(timeout=10) as upstream:
        def relay(request: Request) -> Reply:
            body = request.json()
            items = upstream.post(anvil.url, json=body).json()
            for call, item in zip(body, items):
                if call["method"] == method:
                    item["result"] = answer
            return 200, json.dumps(items)

        with FakeHttpServer(relay) as server:
            provider = provider_factory({31337: server.url}, {31337: [tokens["big"]]})
            with pytest.raises(PermanentProviderError) as caught:
                provider.read_chain(31337, WALLET)
    assert caught.value.code == "provider_bad_response"
    message = str(caught.value)
    assert message.startswith("chain 31337: ") and message.isprintable() and len(message) < 300
    assert "nothex" not in message and "xxxx" not in message
