"""Token lists: the shipped list, lists of TOKEN_LIST_URLS validated at start, refreshed through Redis."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from chaindata.base import TokenBalance
from chaindata.tokens.lists import (TokenIndex, TokenListError, TokenLists, complete_from_list, parse_token_list,
                                     shipped_list)
from harness.fake_http import FakeHttpServer
from settings import VARIABLES, ConfigError

pytestmark = pytest.mark.integration

TOKEN = "0x1111111111111111111111111111111111111111"


def a_list(*tokens: dict[str, Any], name: str = "Test List") -> dict[str, Any]:
    return {"name": name, "timestamp": "2026-01-01T00:00:00.000Z", "version": {"major": 1, "minor": 0, "patch": 0},
            "tokens": list(tokens)}


def a_token(address: str = TOKEN, chain_id: int = 1, symbol: str = "TST", decimals: int = 18) -> dict[str, Any]:
    return {"chainId": chain_id, "address": address, "name": "Test Token", "symbol": symbol, "decimals": decimals}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lists_for(urls: list[str], redis_client: Any, clock: Clock | None = None, ttl_s: int = 60) -> TokenLists:
    return TokenLists(urls, client=redis_client, namespace=f"test-{uuid.uuid4().hex}", ttl_s=ttl_s, timeout_s=5,
                      clock=clock or Clock())


def test_the_shipped_list_validates_and_covers_every_default_chain() -> None:
    tokens = shipped_list()
    chains = {t.chain_id for t in tokens}
    assert {int(c) for c in VARIABLES["SYNC_CHAINS"].default.split(",")} <= chains
    assert all(t.address == t.address.lower() and 0 <= t.decimals <= 255 for t in tokens)
    usdc = [t for t in tokens if t.chain_id == 1 and t.symbol == "USDC"]
    assert [(t.address, t.decimals) for t in usdc] == [("0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", 6)]


@pytest.mark.parametrize("document, where", [
    ("{not json", "not JSON"),
    (json.dumps(a_list(a_token(decimals=300))), "tokens/0/decimals"),
    (json.dumps(a_list(a_token(address="0x12"))), "tokens/0/address"),
    (json.dumps({"name": "No Tokens", "timestamp": "2026-01-01T00:00:00Z"}), "(top)"),
])
def test_a_document_that_is_no_token_list_is_refused_with_where(document: str, where: str) -> None:
    with pytest.raises(TokenListError, match=r"^my list: .*" + where.replace("(", r"\(").replace(")", r"\)")):
        parse_token_list(document, source="my list")


def test_non_evm_entries_are_skipped() -> None:
    solana = a_token(address="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", chain_id=501000101)
    assert [t.address for t in parse_token_list(json.dumps(a_list(a_token(), solana)), source="x")] == [TOKEN]


def test_a_configured_list_that_does_not_validate_stops_the_start(tmp_path: Path, redis_client: Any) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(a_list(a_token(decimals=-1))))
    with pytest.raises(ConfigError, match=r"^TOKEN_LIST_URLS list 1 \(file://.*bad\.json\): not a valid token list"):
        lists_for([bad.as_uri()], redis_client).start()


def test_a_fetched_list_is_used_cached_in_redis_and_refreshed_after_its_ttl(redis_client: Any) -> None:
    served = {"body": json.dumps(a_list(a_token()))}
    clock = Clock()
    with FakeHttpServer(lambda request: (200, served["body"])) as server:
        url = server.url + "/list.json"
        lists = lists_for([url], redis_client, clock, ttl_s=60)
        lists.start()
        assert lists.index().is_listed(1, TOKEN) and len(server.requests) == 1
        # Another process of the deployment, within the TTL, reads Redis's copy, not the server.
        other = TokenLists([url], client=redis_client, namespace=lists._namespace, ttl_s=60, timeout_s=5,
                           clock=Clock())
        other.start()
        assert other.index().is_listed(1, TOKEN) and len(server.requests) == 1

        other_token = "0x2222222222222222222222222222222222222222"
        served["body"] = json.dumps(a_list(a_token(address=other_token)))
        redis_client.delete(*redis_client.keys(f"{lists._namespace}:token-list:*"))  # the Redis TTL lapsed too
        clock.now = 61
        index = lists.index()
    assert index.is_listed(1, other_token) and not index.is_listed(1, TOKEN)
    assert len(server.requests) == 2


def test_a_list_gone_bad_later_keeps_the_last_good_copy_and_says_why(redis_client: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    served = {"status": 200, "body": json.dumps(a_list(a_token()))}
    clock = Clock()
    with FakeHttpServer(lambda request: (served["status"], served["body"])) as server:
        lists = lists_for([server.url], redis_client, clock, ttl_s=60)
        lists.start()
        redis_client.delete(*redis_client.keys(f"{lists._namespace}:token-list:*"))
        served["body"] = '{"name": "broken", "tokens": "nope"}'
        clock.now = 61
        with caplog.at_level(logging.WARNING, logger="chaindata.tokens.lists"):
            index = lists.index()
        assert index.is_listed(1, TOKEN)
        assert "not a valid token list" in caplog.text and "keeping the last good copy" in caplog.text
        assert not redis_client.keys(f"{lists._namespace}:token-list:*")  # junk is never shared

        served["status"] = 503  # unreachable later: same
        clock.now = 200
        assert lists.index().is_listed(1, TOKEN)


def test_an_unreachable_list_at_start_is_no_configuration_error(redis_client: Any) -> None:
    lists = lists_for(["http://127.0.0.1:9/list.json"], redis_client)
    lists.start()
    assert lists.index().is_listed(1, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")  # the shipped list stays


def test_a_worker_process_refuses_an_invalid_list_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{\"name\": \"truncated")
    env = {**os.environ, "TOKEN_LIST_URLS": bad.as_uri()}
    done = subprocess.run([sys.executable, "-c", "import actors.worker"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode != 0
    assert "ConfigError: TOKEN_LIST_URLS list 1 (file://" in done.stderr and "not JSON" in done.stderr


def test_a_list_fills_in_only_what_the_token_could_not_say() -> None:
    index = TokenIndex([parse_token_list(json.dumps(a_list(a_token(symbol="TST", decimals=6))), source="x")])
    unlisted = "0x3333333333333333333333333333333333333333"
    balances = [TokenBalance(1, TOKEN, "", "", None, 5), TokenBalance(1, TOKEN, "OWN", "Own name", 18, 5),
                TokenBalance(1, unlisted, "", "", None, 5), TokenBalance(10, TOKEN, "", "", None, 5)]
    assert complete_from_list(balances, index) == [
        TokenBalance(1, TOKEN, "TST", "Test Token", 6, 5),
        TokenBalance(1, TOKEN, "OWN", "Own name", 18, 5),  # the chain's own answer wins
        TokenBalance(1, unlisted, "", "", None, 5),  # on no list: decimals stay unknown
        TokenBalance(10, TOKEN, "", "", None, 5),  # listed on another chain only
    ]


#: The Uniswap default token list as published (an npm devDependency of tests/evm; GPL-licensed, so it
#: is a test fixture only and not shipped: a deployment fetches it with TOKEN_LIST_URLS).
UNISWAP_DEFAULT = (Path(__file__).resolve().parents[1] / "evm" / "node_modules" / "@uniswap" / "default-token-list"
                   / "build" / "uniswap-default.tokenlist.json")
USDC_MAINNET = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"


def test_the_published_uniswap_default_list_loads_through_token_list_urls(redis_client) -> None:
    lists = TokenLists([UNISWAP_DEFAULT.as_uri()], client=redis_client, namespace=f"test-{uuid.uuid4().hex}",
                       ttl_s=60, timeout_s=5)
    lists.start()
    index = lists.index()
    published = parse_token_list(UNISWAP_DEFAULT.read_bytes(), source="uniswap default")
    assert len(published) > 100 and {1, 10, 137, 8453, 42161} <= {t.chain_id for t in published}
    for token in published:
        assert index.is_listed(token.chain_id, token.address)
    usdc = index.get(1, USDC_MAINNET)
    assert (usdc.symbol, usdc.decimals) == ("USDC", 6)


def test_a_refresh_holds_up_no_other_read_and_only_one_thread_fetches(redis_client: Any) -> None:
    other_token = "0x2222222222222222222222222222222222222222"
    served = {"body": json.dumps(a_list(a_token()))}
    fetching, may_answer = threading.Event(), threading.Event()

    def slow_once_due(request):
        if clock.now > 0:  # the refresh, not the start
            fetching.set()
            may_answer.wait(10)
        return 200, served["body"]

    clock = Clock()
    with FakeHttpServer(slow_once_due) as server:
        lists = lists_for([server.url], redis_client, clock, ttl_s=60)
        lists.start()
        redis_client.delete(*redis_client.keys(f"{lists._namespace}:token-list:*"))
        served["body"] = json.dumps(a_list(a_token(address=other_token)))
        clock.now = 61
        refreshed: list[Any] = []
        refresher = threading.Thread(target=lambda: refreshed.append(lists.index()))
        refresher.start()
        try:
            assert fetching.wait(5)
            # While the one refresh waits for the server, other reads get the current index at once.
            readers = [threading.Thread(target=lists.index) for _ in range(4)]
            started = time.monotonic()
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.join(2)
            assert time.monotonic() - started < 1.5 and not any(r.is_alive() for r in readers)
            assert lists.index().is_listed(1, TOKEN) and not lists.index().is_listed(1, other_token)
        finally:
            may_answer.set()
            refresher.join(5)
    assert len(server.requests) == 2  # the start's fetch and one refresh, however many threads read
    assert refreshed[0].is_listed(1, other_token) and lists.index().is_listed(1, other_token)
