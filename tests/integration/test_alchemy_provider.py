"""AlchemyProvider against a local server of this module speaking Alchemy's JSON-RPC (on 127.0.0.1, any port)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

import chaindata.alchemy
from chaindata.alchemy import AlchemyProvider
from chaindata.base import NATIVE_TOKEN, PermanentProviderError, ProviderError, TokenBalance, TransientProviderError
from chaindata.base import TokenError
from chaindata.node_errors import RateLimited
from chaindata.retrying import RetryPolicy
from harness.fake_http import FakeHttpServer, Reply, Request

pytestmark = pytest.mark.integration

KEY = "alchemy-test-key-6c1f0e2b9d"
CHAIN = 1
WALLET = "0x00000000000000000000000000000000c0ffee02"
NATIVE = 1_500_000_000_000_000_001
ALPHA = "0xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
BRAVO = "0xB2b2B2b2b2B2b2b2B2B2b2b2B2b2b2B2b2b2b2B2"  # mixed case, as some answers are
NO_DECIMALS = "0xd3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3"
BIG = 123456789012345678901234567

PAGES = {
    None: {
        "address": WALLET,
        "tokenBalances": [
            {"contractAddress": ALPHA, "tokenBalance": "0x" + f"{BIG:064x}", "error": None},
            {"contractAddress": "0xe0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0", "tokenBalance": "0x" + "0" * 64,
             "error": None},
            {"contractAddress": "0xf0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0", "tokenBalance": None,
             "error": "execution reverted"},
        ],
        "pageKey": "page-two",
    },
    "page-two": {
        "address": WALLET,
        "tokenBalances": [
            {"contractAddress": BRAVO, "tokenBalance": "0x7", "error": None},
            {"contractAddress": "0xe1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1", "tokenBalance": "0x", "error": None},
            {"contractAddress": NO_DECIMALS, "tokenBalance": "0x2a", "error": None},
        ],
    },
}
METADATA = {
    ALPHA: {"name": "Alpha Token", "symbol": "ALPHA", "decimals": 18, "logo": None},
    BRAVO.lower(): {"name": "Bravo\x00 Dollar", "symbol": "BRV", "decimals": 6, "logo": None},
    NO_DECIMALS: {"name": None, "symbol": "ND", "decimals": None, "logo": None},
}
#: Balances of tokens Alchemy's "erc20" listing leaves out, read by address when the caller names them.
EXTRA = {"0xabababababababababababababababababababab": 99}
EXPECTED = [
    TokenBalance(CHAIN, NATIVE_TOKEN, "ETH", "Ether", 18, NATIVE),
    TokenBalance(CHAIN, ALPHA, "ALPHA", "Alpha Token", 18, BIG),
    TokenBalance(CHAIN, BRAVO.lower(), "BRV", "Bravo Dollar", 6, 7),
    TokenBalance(CHAIN, NO_DECIMALS, "ND", "ND", None, 42),
]


#: The tests of one request's outcome send it once; retries have tests of their own.
ONCE = RetryPolicy(tries=1)
#: What the fake answers a JSON-RPC batch holding a Token API method: Alchemy documents that its
#: enhanced ``alchemy_*`` methods do not support batch requests.
BATCH_REFUSED = {"jsonrpc": "2.0", "id": None,
                 "error": {"code": -32600, "message": "alchemy_ methods do not support batch requests"}}


class FakeAlchemy(FakeHttpServer):
    """Answers like Alchemy at ``/v2/<KEY>``; ``status``, ``sleep_s``, ``rpc_error`` and ``body`` change how.

    Pages of ``alchemy_getTokenBalances`` come from ``pages`` (keyed by ``pageKey``; ``None`` is the first).
    A batch holding any ``alchemy_*`` method is refused, as Alchemy documents.
    """

    def __init__(self) -> None:
        super().__init__()
        self.chain_id = CHAIN
        self.status = 200
        self.sleep_s = 0.0
        self.rpc_error: int | None = None
        self.body: bytes | None = None
        self.pages: dict[str | None, dict[str, Any]] = PAGES
        self.failures: list[tuple[int, dict[str, str]]] = []  # (status, headers) answered before the real ones

    @property
    def base_url(self) -> str:
        return f"{self.url}/v2/"

    def respond(self, request: Request) -> Reply:
        payload = request.json()
        if self.sleep_s:
            self.wait(self.sleep_s)
        if request.target != f"/v2/{KEY}":
            return 401, b'{"error": "Must be authenticated!"}'
        if self.status != 200 or self.body is not None:
            return self.status, self.body or b"{}"
        if self.failures:
            status, headers = self.failures.pop(0)
            return status, b"{}", headers
        if isinstance(payload, list) and any(call["method"].startswith("alchemy_") for call in payload):
            return 400, json.dumps(BATCH_REFUSED)
        if isinstance(payload, list):
            answers: Any = [{"jsonrpc": "2.0", "id": call["id"], **self.answer(call)} for call in payload]
        else:
            answers = {"jsonrpc": "2.0", "id": payload["id"], **self.answer(payload)}
        return 200, json.dumps(answers)

    def answer(self, call: dict[str, Any]) -> dict[str, Any]:
        method, params = call["method"], call["params"]
        if self.rpc_error is not None:
            # Some servers echo what they were sent, key included: the provider must not pass it on.
            return {"error": {"code": self.rpc_error, "message": f"refused for key {KEY}"}}
        if method == "eth_chainId":
            return {"result": hex(self.chain_id)}
        if method == "eth_getBalance" and params == [WALLET, "latest"]:
            return {"result": hex(NATIVE)}
        if method == "alchemy_getTokenBalances" and params[:2] == [WALLET, "erc20"]:
            page_key = params[2].get("pageKey") if len(params) > 2 else None
            return {"result": self.pages[page_key]}
        if method == "alchemy_getTokenBalances" and params[0] == WALLET and isinstance(params[1], list):
            return {"result": {"address": WALLET, "tokenBalances": [
                {"contractAddress": a, "tokenBalance": hex(EXTRA.get(a, 0)), "error": None} for a in params[1]]}}
        if method == "alchemy_getTokenMetadata":
            return {"result": METADATA[params[0]]}
        return {"error": {"code": -32601, "message": f"no method {method}"}}


@pytest.fixture()
def server() -> Iterator[FakeAlchemy]:
    with FakeAlchemy() as fake:
        yield fake


@pytest.fixture()
def provider(server: FakeAlchemy) -> Iterator[AlchemyProvider]:
    made = AlchemyProvider({CHAIN: server.base_url}, KEY, timeout_s=5, retry=ONCE)
    yield made
    made.close()


def methods(payload: Any) -> list[str]:
    return [call["method"] for call in payload] if isinstance(payload, list) else [payload["method"]]


def assert_secret_kept(error: ProviderError) -> None:
    message = str(error)
    assert KEY not in message and "127.0.0.1" not in message and "/v2" not in message, message
    assert message.startswith(f"chain {CHAIN}: ")


def test_holdings_across_two_pages_one_request_each_never_a_token_api_batch(server: FakeAlchemy,
                                                                           provider: AlchemyProvider) -> None:
    read = provider.read_chain(CHAIN, WALLET)
    assert read.balances == EXPECTED
    assert read.truncated is False and read.requests == len(server.requests) == 6
    # The reverted entry of page one is reported on its own, not silently dropped.
    assert read.token_errors == [TokenError("0xf0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0", "balance_unreadable",
                                            "the alchemy provider could not read this balance")]

    # The key is a path segment of every request (the base URL's trailing slash is not doubled).
    assert {request.target for request in server.requests} == {f"/v2/{KEY}"}
    bodies = [request.json() for request in server.requests]
    assert_no_token_api_batch(bodies)
    assert [methods(body) for body in bodies[:3]] == [
        ["eth_chainId", "eth_getBalance"],  # standard methods may share a batch
        ["alchemy_getTokenBalances"],
        ["alchemy_getTokenBalances"],
    ]
    assert bodies[1]["params"] == [WALLET, "erc20", {"maxCount": 100}]
    assert bodies[2]["params"] == [WALLET, "erc20", {"maxCount": 100, "pageKey": "page-two"}]
    # One metadata request per held token (sent concurrently, so in any order).
    assert sorted(body["params"][0] for body in bodies[3:]) == sorted([ALPHA, BRAVO.lower(), NO_DECIMALS])
    assert {body["method"] for body in bodies[3:]} == {"alchemy_getTokenMetadata"}


def assert_no_token_api_batch(bodies: list[Any]) -> None:
    for body in bodies:
        if isinstance(body, list):
            assert not any(call["method"].startswith("alchemy_") for call in body), body


def test_pagekey_is_followed_to_the_end(server: FakeAlchemy, provider: AlchemyProvider,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = [f"0x{i:040x}" for i in range(1, 13)]
    keys: list[str | None] = [None, *(f"key-{n}" for n in range(1, 6))]
    server.pages = {key: {"address": WALLET,
                          "tokenBalances": [{"contractAddress": t, "tokenBalance": "0x1", "error": None}
                                            for t in tokens[2 * n:2 * n + 2]],
                          **({"pageKey": keys[n + 1]} if n + 1 < len(keys) else {})}
                    for n, key in enumerate(keys)}
    for token in tokens:
        monkeypatch.setitem(METADATA, token, {"name": "T", "symbol": "T", "decimals": 0})

    read = provider.read_chain(CHAIN, WALLET)

    assert [b.token_address for b in read.balances[1:]] == tokens and read.truncated is False
    page_keys = [body["params"][2].get("pageKey") for body in (r.json() for r in server.requests)
                 if isinstance(body, dict) and body["method"] == "alchemy_getTokenBalances"]
    assert page_keys == keys  # six pages, each asked once, in order, the last without a pageKey after it


def test_complete_metadata_is_cached(server: FakeAlchemy, provider: AlchemyProvider) -> None:
    provider.read_chain(CHAIN, WALLET)
    server.requests.clear()

    assert provider.read_chain(CHAIN, WALLET).balances == EXPECTED
    bodies = [request.json() for request in server.requests]
    assert [methods(body) for body in bodies] == [
        ["eth_getBalance"],  # the chain id was checked already
        ["alchemy_getTokenBalances"],
        ["alchemy_getTokenBalances"],
        ["alchemy_getTokenMetadata"],  # asked again only for the token whose decimals were unknown
    ]
    assert bodies[3]["params"] == [NO_DECIMALS]


def test_the_metadata_cache_is_bounded(server: FakeAlchemy) -> None:
    provider = AlchemyProvider({CHAIN: server.base_url}, KEY, timeout_s=5, retry=ONCE, metadata_cache_size=1)
    try:
        provider.read_chain(CHAIN, WALLET)
        server.requests.clear()
        assert provider.read_chain(CHAIN, WALLET).balances == EXPECTED
    finally:
        provider.close()
    asked = [request.json()["params"][0] for request in server.requests
             if not isinstance(request.json(), list) and request.json()["method"] == "alchemy_getTokenMetadata"]
    # Of the two complete tokens only one was kept; the other and the one of unknown decimals are asked again.
    assert len(asked) == 2 and NO_DECIMALS in asked


def test_extra_candidate_tokens_are_read_by_address(server: FakeAlchemy, provider: AlchemyProvider,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    extra = "0xabababababababababababababababababababab"
    monkeypatch.setitem(METADATA, extra, {"name": "Extra", "symbol": "EXT", "decimals": 2})

    read = provider.read_chain(CHAIN, WALLET, tokens=[extra.upper().replace("0X", "0x"), ALPHA])

    assert read.balances[-1] == TokenBalance(CHAIN, extra, "EXT", "Extra", 2, 99)
    by_address = [body["params"] for body in (r.json() for r in server.requests)
                  if isinstance(body, dict) and body["method"] == "alchemy_getTokenBalances"
                  and isinstance(body["params"][1], list)]
    assert by_address == [[WALLET, [extra]]]  # ALPHA was listed already: not asked again


def test_pages_past_the_cap_are_left_out_and_the_read_says_truncated(server: FakeAlchemy, provider: AlchemyProvider,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(chaindata.alchemy, "MAX_PAGES", 1)

    with caplog.at_level(logging.WARNING, logger="chaindata.alchemy"):
        read = provider.read_chain(CHAIN, WALLET)
    assert read.balances == EXPECTED[:2] and read.truncated is True
    assert "more than 1 pages" in caplog.text
    assert KEY not in caplog.text


def test_a_429_is_retried_after_its_retry_after(server: FakeAlchemy) -> None:
    server.failures = [(429, {"Retry-After": "1"})]
    patient = AlchemyProvider({CHAIN: server.base_url}, KEY, timeout_s=5, retry=RetryPolicy(tries=3, base_s=0.01))
    started = time.monotonic()
    try:
        assert patient.read_chain(CHAIN, WALLET).balances == EXPECTED
    finally:
        patient.close()
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize(("status", "error_class", "code"), [
    (429, RateLimited, "provider_rate_limited"),
    (503, TransientProviderError, "provider_unavailable"),
    (500, TransientProviderError, "provider_unavailable"),
    (400, PermanentProviderError, "provider_rejected"),
    (401, PermanentProviderError, "provider_rejected"),
])
def test_http_statuses_map_to_errors(server: FakeAlchemy, provider: AlchemyProvider, status: int,
                                     error_class: type[ProviderError], code: str) -> None:
    server.status = status

    with pytest.raises(ProviderError) as caught:
        provider.read_chain(CHAIN, WALLET)
    assert type(caught.value) is error_class and caught.value.code == code
    assert f"HTTP {status}" in str(caught.value)
    assert_secret_kept(caught.value)


def test_a_wrong_key_is_rejected_for_good(server: FakeAlchemy) -> None:
    wrong = AlchemyProvider({CHAIN: server.base_url}, "not-the-key-at-all", timeout_s=5, retry=ONCE)
    try:
        with pytest.raises(PermanentProviderError) as caught:
            wrong.read_chain(CHAIN, WALLET)
    finally:
        wrong.close()
    assert caught.value.code == "provider_rejected"
    assert "not-the-key-at-all" not in str(caught.value)


def test_a_slow_server_is_a_transient_timeout(server: FakeAlchemy) -> None:
    server.sleep_s = 3.0
    slow = AlchemyProvider({CHAIN: server.base_url}, KEY, timeout_s=0.5, retry=ONCE)
    started = time.monotonic()
    try:
        with pytest.raises(TransientProviderError) as caught:
            slow.read_chain(CHAIN, WALLET)
    finally:
        slow.close()
    assert time.monotonic() - started < 2.5
    assert caught.value.code == "provider_timeout"
    assert_secret_kept(caught.value)


@pytest.mark.parametrize(("rpc_code", "error_class", "code"), [
    (429, RateLimited, "provider_rate_limited"),
    (-32005, RateLimited, "provider_rate_limited"),
    (-32602, PermanentProviderError, "provider_rejected"),
])
def test_json_rpc_errors_map_to_errors_without_echoing_the_key(server: FakeAlchemy, provider: AlchemyProvider,
                                                               rpc_code: int, error_class: type[ProviderError],
                                                               code: str) -> None:
    server.rpc_error = rpc_code

    with pytest.raises(ProviderError) as caught:
        provider.read_chain(CHAIN, WALLET)
    assert type(caught.value) is error_class and caught.value.code == code
    assert f"JSON-RPC error {rpc_code}: refused for key ***" in str(caught.value)
    assert_secret_kept(caught.value)


def test_malformed_json_is_a_permanent_bad_response(server: FakeAlchemy, provider: AlchemyProvider) -> None:
    server.body = b"<html>gateway says hi</html>"

    with pytest.raises(PermanentProviderError) as caught:
        provider.read_chain(CHAIN, WALLET)
    assert caught.value.code == "provider_bad_response"
    assert_secret_kept(caught.value)


def test_an_url_of_another_chain_is_refused(server: FakeAlchemy, provider: AlchemyProvider) -> None:
    server.chain_id = 137

    with pytest.raises(PermanentProviderError) as caught:
        provider.read_chain(CHAIN, WALLET)
    assert caught.value.code == "provider_misconfigured"
    assert_secret_kept(caught.value)


def test_a_chain_without_url_is_unsupported(provider: AlchemyProvider) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        provider.read_chain(10, WALLET)
    assert caught.value.code == "unsupported_chain"
