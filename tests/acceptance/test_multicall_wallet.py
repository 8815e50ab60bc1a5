"""A wallet of 250 ERC-20s read through Multicall3 on a real Anvil node, by the provider and by a real
``dramatiq`` worker: every readable balance equal to the node's to the wei, the odd tokens reported one by
one, the whole read at one block, in a handful of HTTP requests.

The node gets Multicall3 at its canonical address (viem's compiled copy, see ``harness.anvil``); the 250
tokens are one TestToken's code planted at 250 addresses with their storage written directly, so the
setup takes seconds.  A relay in front of the node counts the HTTP requests the provider makes.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from chaindata.base import NATIVE_TOKEN
from chaindata.rpc import RpcProvider
from storage import operations
from tests.acceptance.test_rpc_worker import enqueue_directly, exact_balance
from harness.anvil import Anvil, ManyTokens, balance_of, plant_many_tokens, recording_relay, running_anvil
from tests.processes import WorkerProcess
from tests.waiting import wait_for

pytestmark = pytest.mark.acceptance

HOLDER = "0x00000000000000000000000000000000000a11ce"
NATIVE = 12345678901234567890123
#: HTTP requests of a first read of the wallet: the block (with the chain id and Multicall3's code), the
#: balances, the metadata of the tokens held.  Hundreds of tokens, a handful of requests.
MAX_REQUESTS = 4


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, ManyTokens]]:
    with running_anvil(tmp_path_factory.mktemp("anvil"), 31337) as anvil:
        anvil.install_multicall3()
        many = plant_many_tokens(anvil, HOLDER)
        anvil.set_balance(HOLDER, NATIVE)
        yield anvil, many


def test_the_provider_reads_250_tokens_at_one_block_in_a_handful_of_requests(node) -> None:
    anvil, many = node
    with recording_relay(anvil.url) as relay:
        provider = RpcProvider({31337: relay.url}, {31337: many.all}, timeout_s=10)
        try:
            read = provider.read_chain(31337, HOLDER)
        finally:
            provider.close()
        bodies = [request.json() for request in relay.requests]

    assert read.requests == len(bodies) <= MAX_REQUESTS
    calls = [call for body in bodies for call in body]
    assert {call["params"][1] for call in calls if call["method"] == "eth_call"} == {hex(read.block_number)}

    held = {b.token_address: b for b in read.balances}
    assert held.pop(NATIVE_TOKEN).raw_balance == NATIVE
    assert {token: b.raw_balance for token, b in held.items()} == many.balances
    for token, balance in held.items():  # to the wei, as the node itself answers at that block
        assert balance.raw_balance == balance_of(anvil, token, HOLDER, read.block_number), token
    assert max(b.raw_balance for b in held.values()) == 2**256 - 1
    assert {held[t].decimals for t in many.plain} == set(range(25))
    assert (held[many.no_decimals].symbol, held[many.no_decimals].decimals) == ("NODEC", None)
    assert (held[many.bytes32_symbol].symbol, held[many.bytes32_symbol].name) == ("LGCY", "Legacy Token")
    assert [(e.token_address, e.code) for e in read.token_errors] == [(many.reverting, "reverted"),
                                                                      (many.no_decimals, "no_decimals")]


def test_a_worker_syncs_the_250_token_wallet_exactly(start_worker, node, user_id) -> None:
    anvil, many = node
    with recording_relay(anvil.url) as relay:
        start_worker(env={"SYNC_PROVIDER": "rpc", "SYNC_CHAINS": "31337", "RPC_URLS": f"31337={relay.url}",
                          "RPC_TOKENS": "31337=" + " ".join(many.all)})
        # The worker asked the endpoint which chain it serves before it started (actors.middleware.endpoint_check).
        assert [[call["method"] for call in [r.json()]] for r in relay.requests] == [["eth_chainId"]]
        relay.requests.clear()
        op = wait_for(enqueue_directly(user_id, HOLDER, (31337,)), timeout=60)
        requests = len(relay.requests)

    assert op["status"] == "succeeded", op
    result = op["chain_results"]["31337"]
    block = result["block_number"]
    assert isinstance(block, int) and block == int(anvil.rpc("eth_blockNumber"), 16)
    # Every request the relay saw is counted in the audit trail: the read's own, and token discovery's
    # Transfer-log scan (a wallet's first, from block 0: one eth_blockNumber and one eth_getLogs here).
    assert result["requests"] == requests
    assert result["requests"] - result["discovery"]["requests"] <= MAX_REQUESTS
    assert result["discovery"]["requests"] <= 2 and result["discovery"]["error"] is None
    assert result["token_error_count"] == 2
    assert [(e["token_address"], e["code"]) for e in result["token_errors"]] == [
        (many.reverting, "reverted"), (many.no_decimals, "no_decimals")]

    holdings = {h["token_address"]: h for h in operations.get_holdings(user_id, HOLDER)}
    assert int(holdings.pop(NATIVE_TOKEN)["raw_balance"]) == NATIVE
    assert {token: int(h["raw_balance"]) for token, h in holdings.items()} == many.balances
    assert {h["block_number"] for h in holdings.values()} == {block}
    for token, h in holdings.items():
        assert int(h["raw_balance"]) == balance_of(anvil, token, HOLDER, block), token
        if token != many.no_decimals:
            assert h["balance"] == exact_balance(int(h["raw_balance"]), h["decimals"]), token
    # Never valued on a guess: no decimals, no balance in tokens, no value.
    no_decimals = holdings[many.no_decimals]
    assert (no_decimals["decimals"], no_decimals["balance"], no_decimals["value_usd"]) == (None, None, None)
    assert op["holdings_count"] == len(many.balances) + 1


def test_a_worker_whose_endpoint_serves_another_chain_refuses_to_start(tmp_path, clean_queues) -> None:
    with running_anvil(tmp_path, 8453) as base:
        worker = WorkerProcess(tmp_path / "worker.log", env={
            "SYNC_PROVIDER": "rpc", "SYNC_CHAINS": "1,8453", "RPC_URLS": f"1={base.url},8453={base.url}"})
        try:
            worker.proc.wait(timeout=60)
        finally:
            worker.stop()
    assert worker.proc.returncode != 0
    assert "RPC_URLS: the endpoint of chain 1 serves 8453" in worker.log
    assert "8453 serves" not in worker.log  # the right one is not blamed


def test_a_worker_whose_endpoint_is_unreachable_still_starts(start_worker, tmp_path) -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: refused
        worker = start_worker(env={"SYNC_PROVIDER": "rpc", "SYNC_CHAINS": "1",
                                   "RPC_URLS": f"1=http://127.0.0.1:{sock.getsockname()[1]}"})
    assert worker.alive()
    assert "Could not ask the endpoint of chain 1 at start which chain it serves" in worker.log
