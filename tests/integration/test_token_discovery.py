"""Token discovery against a real Anvil node: Transfer logs to the wallet, scanned incrementally,
ranges split on a node's "too many results" answers, cursors kept in the real PostgreSQL.

The relays here stand between the scanner and Anvil: one only records what it passes on (so the
requests a scan makes are asserted, not guessed), the others answer ``eth_getLogs`` over too wide a
range with the error of a real provider instead of passing it on.
"""

from __future__ import annotations

import contextlib
import os
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import actors
import settings
from actors.services import context, lifecycle
from chaindata.base import NATIVE_TOKEN, TransientProviderError
from chaindata.budget import BudgetLimits, ProviderBudget
from chaindata.jsonrpc import JsonRpcClient
from chaindata.retrying import RetryPolicy, deadline_scope
from chaindata.rpc import RpcProvider
from chaindata.tokens.candidates import CandidateTokens
from chaindata.tokens.discovery import TRANSFER_TOPIC, Cursor, TransferLogScanner
from chaindata.tokens.lists import TokenLists
from storage import discovery as discovery_store
from storage import operations
from harness.anvil import Anvil, running_anvil, token_args, word
from harness.fake_http import FakeHttpServer, Reply, Request

pytestmark = pytest.mark.integration

CHAIN = 31337
TRANSFER = "0xa9059cbb"  # transfer(address,uint256)


def fresh_wallet() -> str:
    return "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    with running_anvil(tmp_path_factory.mktemp("anvil"), CHAIN) as node:
        yield node


@contextlib.contextmanager
def relay(target: str, intercept: Callable[[dict], dict | None] = lambda call: None) -> Iterator[FakeHttpServer]:
    """A server passing each JSON-RPC POST on to ``target``, unless ``intercept(call)`` answers it instead."""
    with httpx.Client(timeout=10) as upstream:
        def respond(request: Request) -> Reply:
            call = request.json()
            answer = intercept(call) if isinstance(call, dict) else None
            if answer is not None:
                return 200, json.dumps({"jsonrpc": "2.0", "id": call["id"], **answer})
            forwarded = upstream.post(target, content=request.body, headers={"content-type": "application/json"})
            return forwarded.status_code, forwarded.content

        with FakeHttpServer(respond) as server:
            yield server


def get_logs_ranges(server: FakeHttpServer) -> list[tuple[int, int]]:
    bodies = [r.json() for r in server.requests]
    calls = [call for body in bodies for call in (body if isinstance(body, list) else [body])]
    return [(int(c["params"][0]["fromBlock"], 16), int(c["params"][0]["toBlock"], 16))
            for c in calls if c["method"] == "eth_getLogs"]


FAST = RetryPolicy(tries=3, base_s=0.001, cap_s=0.01)


def scanner(url: str, http: httpx.Client, *, budget: ProviderBudget | None = None, **kwargs: Any) -> TransferLogScanner:
    client = JsonRpcClient(http, url, timeout_s=5, where=f"chain {CHAIN}", peer="the node", budget=budget, retry=FAST)
    return TransferLogScanner(client, chain_id=CHAIN, **kwargs)


def transfer(anvil: Anvil, token: str, to: str, amount: int) -> None:
    """Send ``amount`` of ``token`` from anvil's first account (which holds some) to ``to``."""
    anvil.transact(TRANSFER + word(int(to, 16)) + word(amount), to=token)


def block_number(anvil: Anvil) -> int:
    return int(anvil.rpc("eth_blockNumber"), 16)


def test_minted_and_transferred_tokens_are_found_and_a_second_scan_reads_only_new_blocks(anvil: Anvil) -> None:
    wallet = fresh_wallet()
    sender = anvil.rpc("eth_accounts")[0].lower()
    minted = anvil.deploy("TestToken", token_args("Minted", "MINT", 18))
    sent = anvil.deploy("TestToken", token_args("Sent", "SENT", 6))
    elsewhere = anvil.deploy("TestToken", token_args("Elsewhere", "ELSE", 18))
    anvil.mint(minted, wallet, 5 * 10**18)
    anvil.mint(sent, sender, 1000)
    transfer(anvil, sent, wallet, 250)
    anvil.mint(elsewhere, sender, 10**18)  # a transfer, but to someone else
    head = block_number(anvil)

    with httpx.Client() as http, relay(anvil.url) as server:
        first = scanner(server.url, http).scan(wallet, start_block=0, previous=None)

        assert first.cursor == Cursor(from_block=0, to_block=head, tokens=frozenset({minted, sent}))
        assert first.new_tokens == {minted, sent}
        calls = [r.json() for r in server.requests]
        assert [c["method"] for c in calls] == ["eth_blockNumber", "eth_getLogs"] and first.requests == 2
        assert calls[1]["params"] == [{"fromBlock": "0x0", "toBlock": hex(head),
                                       "topics": [TRANSFER_TOPIC, None, "0x" + wallet[2:].rjust(64, "0")]}]

        later = anvil.deploy("TestToken", token_args("Later", "LATE", 0))
        anvil.mint(later, wallet, 3)
        new_head = block_number(anvil)
        server.requests.clear()
        second = scanner(server.url, http).scan(wallet, start_block=0, previous=first.cursor)

    assert second.cursor == Cursor(from_block=0, to_block=new_head, tokens=frozenset({minted, sent, later}))
    assert second.new_tokens == {later}
    assert get_logs_ranges(server) == [(head + 1, new_head)]  # only the blocks after the first scan


def test_a_later_scan_reads_the_reorg_margin_again_and_a_lowered_floor(anvil: Anvil) -> None:
    wallet = fresh_wallet()
    # The lowered floor (block 5) must lie below the previous scan's start, whichever tests ran on this node first.
    anvil.rpc("anvil_mine", hex(10))
    token = anvil.deploy("TestToken", token_args("Margin", "MRG", 18))
    anvil.mint(token, wallet, 1)
    head = block_number(anvil)
    previous = Cursor(from_block=head - 1, to_block=head, tokens=frozenset())
    anvil.mint(token, wallet, 1)

    with httpx.Client() as http, relay(anvil.url) as server:
        scan = scanner(server.url, http, reorg_blocks=2).scan(wallet, start_block=5, previous=previous)

    # The floor went from head-1 down to 5: blocks 5..head-2 are read, then the margin and the new block.
    assert get_logs_ranges(server) == [(5, head - 2), (head - 1, head + 1)]
    assert scan.cursor == Cursor(from_block=5, to_block=head + 1, tokens=frozenset({token}))


def many_transfers(anvil: Anvil, wallet: str, count: int) -> tuple[list[str], int, int]:
    """``count`` tokens, each minted to ``wallet`` in a block of its own; their addresses and the blocks spanned."""
    first = block_number(anvil) + 1
    tokens = []
    for i in range(count):
        tokens.append(anvil.deploy("TestToken", token_args(f"Many {i}", f"M{i}", 18)))
        anvil.mint(tokens[-1], wallet, i + 1)
    return tokens, first, block_number(anvil)


def test_too_many_results_splits_the_range_until_the_node_answers(anvil: Anvil) -> None:
    wallet = fresh_wallet()
    tokens, _, head = many_transfers(anvil, wallet, 6)
    limit = 4  # blocks per eth_getLogs this "node" accepts

    def refuse_wide(call: dict) -> dict | None:
        if call["method"] != "eth_getLogs":
            return None
        span = int(call["params"][0]["toBlock"], 16) - int(call["params"][0]["fromBlock"], 16) + 1
        # What geth, erigon and Infura answer (Infura with -32005, this very text).
        return {"error": {"code": -32005, "message": "query returned more than 10000 results"}} if span > limit else None

    with httpx.Client() as http, relay(anvil.url, refuse_wide) as server:
        scan = scanner(server.url, http).scan(wallet, start_block=0, previous=None)

    assert scan.cursor.tokens == set(tokens)
    ranges = get_logs_ranges(server)
    answered = [r for r in ranges if r[1] - r[0] + 1 <= limit]
    # The answered ranges tile 0..head exactly, in order, with no gap and no overlap.
    assert answered[0][0] == 0 and answered[-1][1] == head
    assert all(b[0] == a[1] + 1 for a, b in zip(answered, answered[1:]))
    # Halving finds a span that works, then keeps it: the failures are the halvings only.
    refused = [r for r in ranges if r[1] - r[0] + 1 > limit]
    assert len(refused) <= (head + 1).bit_length() and scan.refused == len(refused)
    assert scan.requests == 1 + len(ranges)


def test_the_range_a_provider_suggests_is_followed(anvil: Anvil) -> None:
    wallet = fresh_wallet()
    tokens, _, head = many_transfers(anvil, wallet, 3)
    limit = 5
    alchemy = ("Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
               "limit on the response size, or you can request any block range with a cap of 10K logs in the "
               "response. Based on your parameters and the response size limit, this block range should work: "
               "[{}, {}]")

    def suggest(call: dict) -> dict | None:
        if call["method"] != "eth_getLogs":
            return None
        first, last = (int(call["params"][0][k], 16) for k in ("fromBlock", "toBlock"))
        if last - first + 1 <= limit:
            return None
        return {"error": {"code": -32602, "message": alchemy.format(hex(first), hex(first + limit - 1))}}

    with httpx.Client() as http, relay(anvil.url, suggest) as server:
        scan = scanner(server.url, http).scan(wallet, start_block=0, previous=None)

    ranges = get_logs_ranges(server)
    assert ranges[0] == (0, head) and ranges[1] == (0, limit - 1)  # straight to the suggested range
    assert scan.cursor.tokens == set(tokens)
    assert len(ranges) == 1 + math.ceil((head + 1) / limit)  # no other failure after it


def test_a_node_error_that_is_no_range_error_is_raised_not_split(anvil: Anvil) -> None:
    def flaky(call: dict) -> dict | None:
        if call["method"] == "eth_getLogs":
            return {"error": {"code": -32000, "message": "header not found"}}
        return None

    with httpx.Client() as http, relay(anvil.url, flaky) as server:
        with pytest.raises(TransientProviderError) as caught:
            scanner(server.url, http).scan(fresh_wallet(), start_block=0, previous=None)
    assert caught.value.code == "provider_lagging"  # node_errors' table, as for every request
    # Retried by the transport as every request is (FAST: three tries), never split.
    assert get_logs_ranges(server) == [(0, get_logs_ranges(server)[0][1])] * FAST.tries


def test_discovered_tokens_are_read_with_rpc_tokens_empty_and_cursors_persist(anvil: Anvil, database: str,
                                                                               redis_client: Any) -> None:
    wallet = fresh_wallet()
    big = anvil.deploy("TestToken", token_args("Big", "BIG", 18))
    small = anvil.deploy("TestToken", token_args("Small", "SML", 6))
    anvil.mint(big, wallet, 123456789012345678901234567)
    anvil.mint(small, wallet, 7)
    anvil.set_balance(wallet, 10**18)

    def load(w: str, c: int) -> Cursor | None:
        row = discovery_store.load_cursor(w, c)
        return None if row is None else Cursor(row["scanned_from"], row["scanned_to"], frozenset(row["tokens"]))

    def save(w: str, c: int, cursor: Cursor) -> None:
        discovery_store.save_cursor(w, c, scanned_from=cursor.from_block, scanned_to=cursor.to_block,
                                    tokens=cursor.tokens)

    lists = TokenLists([], client=redis_client, namespace=f"test-{uuid.uuid4().hex}", ttl_s=60, timeout_s=5)
    lists.start()
    with httpx.Client() as http, relay(anvil.url) as server:
        candidates = CandidateTokens(configured={}, lists=lists, scanners={CHAIN: scanner(server.url, http)},
                                     start_blocks={}, load=load, save=save)
        first = candidates.for_read(CHAIN, wallet)
        assert set(first.addresses) == {big, small} and first.new == 2

        stored = discovery_store.load_cursor(wallet, CHAIN)
        assert stored["scanned_to"] == first.scanned_to_block and sorted(stored["tokens"]) == sorted([big, small])

        provider = RpcProvider({CHAIN: anvil.url}, {}, timeout_s=5)
        try:
            read = provider.read_chain(CHAIN, wallet, first.addresses)
        finally:
            provider.close()
        assert {b.token_address: b.raw_balance for b in read.balances} == {
            NATIVE_TOKEN: 10**18, big: 123456789012345678901234567, small: 7}

        anvil.rpc("evm_mine")
        server.requests.clear()
        again = candidates.for_read(CHAIN, wallet)
    assert set(again.addresses) == {big, small} and again.new == 0
    # The stored cursor made the second scan start after the first one's last block.
    assert get_logs_ranges(server) == [(first.scanned_to_block + 1, first.scanned_to_block + 1)]


@pytest.fixture()
def rpc_worker(monkeypatch: pytest.MonkeyPatch, clean_queues: Any) -> Iterator[Callable[[str], None]]:
    """Point this process's worker context at a node (``SYNC_PROVIDER=rpc``, ``RPC_TOKENS`` empty); undone after."""
    cached = (context.provider, context.candidate_tokens, context.circuits)

    def configure(url: str) -> None:
        cfg = settings.load({**os.environ, "SYNC_PROVIDER": "rpc", "SYNC_CHAINS": str(CHAIN),
                             "RPC_URLS": f"{CHAIN}={url}", "RPC_TOKENS": "", "DISCOVERY_REORG_BLOCKS": "0"})
        monkeypatch.setattr(context, "cfg", lambda: cfg)
        for factory in cached:
            factory.cache_clear()

    yield configure
    monkeypatch.undo()
    for factory in cached:
        factory.cache_clear()


def test_a_sync_finds_the_wallets_tokens_with_rpc_tokens_empty_and_the_next_scans_only_new_blocks(
        anvil: Anvil, rpc_worker: Callable[[str], None], user_id: str) -> None:
    wallet = fresh_wallet()
    sender = anvil.rpc("eth_accounts")[0].lower()
    minted = anvil.deploy("TestToken", token_args("Minted", "MINT", 18))
    sent = anvil.deploy("TestToken", token_args("Sent", "SENT", 6))
    anvil.mint(minted, wallet, 2**200 + 1)
    anvil.mint(sent, sender, 10**9)
    transfer(anvil, sent, wallet, 123456)
    with relay(anvil.url) as server:
        rpc_worker(server.url)
        first = actors.request_sync(user_id, wallet, [CHAIN])
        lifecycle.sync_portfolio(first)
        held = {h["token_address"]: int(h["raw_balance"]) for h in operations.get_holdings(user_id, wallet)}
        assert actors.get_sync(first)["status"] == "succeeded"
        assert held == {minted: 2**200 + 1, sent: 123456}
        first_head = discovery_store.load_cursor(wallet, CHAIN)["scanned_to"]

        later = anvil.deploy("TestToken", token_args("Later", "LATE", 0))
        anvil.mint(later, wallet, 9)
        head = block_number(anvil)
        server.requests.clear()
        second = actors.request_sync(user_id, wallet, [CHAIN], force=True)
        lifecycle.sync_portfolio(second)

    held = {h["token_address"]: int(h["raw_balance"]) for h in operations.get_holdings(user_id, wallet)}
    assert held == {minted: 2**200 + 1, sent: 123456, later: 9}
    assert get_logs_ranges(server) == [(first_head + 1, head)]
    assert all(h["possible_spam"] for h in operations.get_holdings(user_id, wallet))  # on no list, unpriced


def test_a_floor_above_the_head_scans_nothing_yet_and_its_cursor_is_storable(anvil: Anvil, database: str) -> None:
    wallet = fresh_wallet()
    head = block_number(anvil)
    with httpx.Client() as http, relay(anvil.url) as server:
        scan = scanner(server.url, http).scan(wallet, start_block=head + 100, previous=None)
    assert get_logs_ranges(server) == []
    assert scan.cursor == Cursor(from_block=head + 100, to_block=head + 99, tokens=frozenset())
    discovery_store.save_cursor(wallet, CHAIN, scanned_from=head + 100, scanned_to=head + 99, tokens=())
    assert discovery_store.load_cursor(wallet, CHAIN) == {"scanned_from": head + 100, "scanned_to": head + 99,
                                                          "tokens": []}


def test_a_scan_stops_at_the_attempts_deadline_and_the_next_goes_on_from_its_cursor(anvil: Anvil) -> None:
    wallet = fresh_wallet()
    tokens, first, head = many_transfers(anvil, wallet, 6)

    def slow_logs(call: dict) -> dict | None:
        if call["method"] == "eth_getLogs":
            time.sleep(0.25)
        return None

    with httpx.Client() as http, relay(anvil.url, slow_logs) as server:
        with deadline_scope(time.monotonic() + 0.6):  # room for a few ranges of 2 blocks, not for all
            cut = scanner(server.url, http, max_range=2).scan(wallet, start_block=first, previous=None)
        done = get_logs_ranges(server)
        assert not cut.complete and 0 < len(done) < math.ceil((head - first + 1) / 2)
        # The cursor covers exactly the ranges answered, and the tokens found in them.
        assert cut.cursor.from_block == first and cut.cursor.to_block == done[-1][1] < head
        assert cut.cursor.tokens and cut.cursor.tokens < set(tokens)

        server.requests.clear()
        rest = scanner(server.url, http, max_range=2).scan(wallet, start_block=first, previous=cut.cursor)
    assert rest.complete and rest.cursor == Cursor(first, head, frozenset(tokens))
    assert get_logs_ranges(server)[0][0] == cut.cursor.to_block + 1  # not one block asked again


def test_discovery_saves_an_incomplete_scan_whose_budget_ran_out_before_the_deadline(anvil: Anvil,
                                                                                     redis_client: Any) -> None:
    from tests.conftest import NAMESPACE

    wallet = fresh_wallet()
    tokens, first, head = many_transfers(anvil, wallet, 4)
    budget = ProviderBudget(redis_client, namespace=f"{NAMESPACE}:{uuid.uuid4().hex[:6]}", provider="rpc",
                            limits=BudgetLimits(requests_per_s=4))
    saved: dict[tuple[str, int], Cursor] = {}
    lists = TokenLists([], client=redis_client, namespace=f"test-{uuid.uuid4().hex}", ttl_s=60, timeout_s=5)
    with httpx.Client() as http, relay(anvil.url) as server:
        candidates = CandidateTokens(
            configured={}, lists=lists, start_blocks={CHAIN: first}, load=lambda w, c: saved.get((w, c)),
            save=lambda w, c, cursor: saved.__setitem__((w, c), cursor),
            scanners={CHAIN: scanner(server.url, http, budget=budget, max_range=1)})
        started = time.monotonic()
        with deadline_scope(started + 1.2):  # 4 requests a second: the budget lets a few ranges through
            found = candidates.for_read(CHAIN, wallet)
        assert time.monotonic() - started < 1.5  # no wait past the deadline for the budget
    ranges = get_logs_ranges(server)
    assert found.error is None and 0 < len(ranges) < head - first + 1
    assert saved[(wallet, CHAIN)].to_block == ranges[-1][1] == found.scanned_to_block < head
    assert set(found.addresses) == saved[(wallet, CHAIN)].tokens and found.new == len(found.addresses) > 0
    assert len(server.requests) == 1 + len(ranges)  # eth_blockNumber, then one eth_getLogs per block


def test_a_retry_after_pauses_the_providers_budget_and_the_range_is_asked_again_after_it(anvil: Anvil,
                                                                                        redis_client: Any) -> None:
    from tests.conftest import NAMESPACE

    wallet = fresh_wallet()
    tokens, first, head = many_transfers(anvil, wallet, 2)
    budget = ProviderBudget(redis_client, namespace=f"{NAMESPACE}:{uuid.uuid4().hex[:6]}", provider="rpc",
                            limits=BudgetLimits())
    sent: list[float] = []

    with httpx.Client(timeout=10) as upstream:
        def respond(request: Request) -> Reply:
            if request.json()["method"] == "eth_getLogs":
                sent.append(time.monotonic())
                if len(sent) == 1:
                    return 429, "{}", {"Retry-After": "1"}
            forwarded = upstream.post(anvil.url, content=request.body, headers={"content-type": "application/json"})
            return forwarded.status_code, forwarded.content

        with httpx.Client() as http, FakeHttpServer(respond) as server:
            scan = scanner(server.url, http, budget=budget).scan(wallet, start_block=first, previous=None)
    assert scan.complete and scan.cursor.tokens == set(tokens)
    assert len(sent) == 2 and sent[1] - sent[0] >= 0.9  # the pause, not the transport's short backoff
