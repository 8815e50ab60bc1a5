"""What token discovery costs on a wallet with a long history: requests and wall time, first scan vs. incremental.

    .venv/bin/python -m bench.discovery [--blocks 20000] [--tokens 30] [--new-blocks 100]

(Anvil mines each further block a little slower than the last, so a history of 20,000 blocks
takes minutes to build; the request counts scale as the docstring of each limit says.)

On a real Anvil (``npm ci --prefix tests/evm`` first): ``--tokens`` ERC-20s each minted to one wallet,
their mints spread over a history of about ``--blocks`` blocks (empty blocks mined in between).  Then,
for each way a provider limits ``eth_getLogs`` (a relay in front of Anvil answers as that provider
does), a first scan from block 0, and, after ``--new-blocks`` more blocks and one more token, an
incremental scan from the first one's cursor.  Requests are counted at the relay.

The limits modelled (each with the provider's own error text):

* ``none``: the node answers any range (an own node; Alchemy below 10K logs);
* ``range-10k``: a 10,000-block range cap, no suggestion (QuickNode's ``-32614``, Infura's ``-32602``);
* ``range-10k-presplit``: the same node, with ``DISCOVERY_MAX_BLOCK_RANGE=10000`` configured;
* ``results-20``: at most 20 logs per answer (geth's and Infura's "query returned more than N results",
  with N shrunk to the size of this history);
* ``results-20-suggest``: the same, answered as Alchemy does, with the range that would work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from bench.common import emit
from chaindata.jsonrpc import JsonRpcClient
from chaindata.tokens.discovery import TransferLogScanner
from harness.anvil import Anvil, running_anvil, token_args
from harness.fake_http import FakeHttpServer, Reply, Request

CHAIN = 31337
RANGE_CAP = 10_000
RESULT_CAP = 20


def _range(call: dict) -> tuple[int, int]:
    params = call["params"][0]
    return int(params["fromBlock"], 16), int(params["toBlock"], 16)


def range_capped(call: dict, answer: Callable[[], dict]) -> dict:
    first, last = _range(call)
    if last - first + 1 > RANGE_CAP:
        return {"error": {"code": -32614, "message": "eth_getLogs is limited to a 10,000 range"}}
    return answer()


def result_capped(suggest: bool) -> Callable[[dict, Callable[[], dict]], dict]:
    def limit(call: dict, answer: Callable[[], dict]) -> dict:
        result = answer()
        logs = result.get("result")
        if not isinstance(logs, list) or len(logs) <= RESULT_CAP:
            return result
        first, _ = _range(call)
        if not suggest:
            return {"error": {"code": -32005, "message": f"query returned more than {RESULT_CAP} results"}}
        # Alchemy names a range that would work: up to the block of the last log that fits.
        fits = int(logs[RESULT_CAP - 1]["blockNumber"], 16)
        end = fits if fits > first else first
        return {"error": {"code": -32602, "message": (
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
            "limit on the response size, or you can request any block range with a cap of 10K logs in the "
            f"response. Based on your parameters and the response size limit, this block range should work: "
            f"[{hex(first)}, {hex(end)}]")}}
    return limit


MODES: dict[str, tuple[Callable[[dict, Callable[[], dict]], dict] | None, int]] = {
    "none": (None, 0),
    "range-10k": (range_capped, 0),
    "range-10k-presplit": (range_capped, RANGE_CAP),
    "results-20": (result_capped(False), 0),
    "results-20-suggest": (result_capped(True), 0),
}


@contextlib.contextmanager
def limiting_relay(target: str, limit: Callable[[dict, Callable[[], dict]], dict] | None) -> Iterator[FakeHttpServer]:
    with httpx.Client(timeout=60) as upstream:
        def respond(request: Request) -> Reply:
            call = request.json()

            def answer() -> dict:
                return upstream.post(target, content=request.body, headers={"content-type": "application/json"}).json()

            if limit is None or not isinstance(call, dict) or call.get("method") != "eth_getLogs":
                return 200, json.dumps(answer())
            return 200, json.dumps(limit(call, answer))

        with FakeHttpServer(respond) as server:
            yield server


def build_history(node: Anvil, wallet: str, tokens: int, blocks: int) -> None:
    gap = max(0, blocks // tokens - 2)  # a deployment and a mint are a block each
    for i in range(tokens):
        token = node.deploy("TestToken", token_args(f"History {i}", f"H{i}", 18))
        node.mint(token, wallet, i + 1)
        mine(node, gap)


def mine(node: Anvil, blocks: int) -> None:
    """Mine ``blocks`` empty blocks (in steps: anvil mines a hundred at once far faster than a thousand)."""
    for step in range(0, blocks, 100):
        node.rpc("anvil_mine", hex(min(100, blocks - step)))


def measure(url: str, wallet: str, max_range: int, previous=None):
    with httpx.Client() as http:
        client = JsonRpcClient(http, url, timeout_s=60, where=f"chain {CHAIN}", peer="the node")
        scanner = TransferLogScanner(client, chain_id=CHAIN, max_range=max_range)
        started = time.perf_counter()
        scan = scanner.scan(wallet, start_block=0, previous=previous)
        return scan, (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.discovery", description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20_000)
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--new-blocks", type=int, default=100)
    args = parser.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory() as tmp, running_anvil(Path(tmp), CHAIN) as node:
        wallet = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
        started = time.perf_counter()
        build_history(node, wallet, args.tokens, args.blocks)
        head = int(node.rpc("eth_blockNumber"), 16)
        print(f"history: {args.tokens} tokens minted to one wallet over {head + 1} blocks "
              f"(built in {time.perf_counter() - started:.1f} s)")
        firsts = {}
        for mode, (limit, max_range) in MODES.items():
            with limiting_relay(node.url, limit) as relay:
                scan, ms = measure(relay.url, wallet, max_range)
                assert len(scan.cursor.tokens) == args.tokens, (mode, len(scan.cursor.tokens))
                firsts[mode] = (scan, ms, len(relay.requests))
        # The incremental scans, after new blocks and one new token.
        mine(node, args.new_blocks)
        late = node.deploy("TestToken", token_args("Late", "LATE", 18))
        node.mint(late, wallet, 1)
        for mode, (limit, max_range) in MODES.items():
            first, first_ms, first_requests = firsts[mode]
            with limiting_relay(node.url, limit) as relay:
                scan, ms = measure(relay.url, wallet, max_range, previous=first.cursor)
                assert scan.new_tokens == {late}, mode
                results.append({"mode": mode, "first_requests": first_requests, "first_ms": round(first_ms),
                                "first_refused": first.refused,
                                "incremental_requests": len(relay.requests), "incremental_ms": round(ms),
                                "incremental_blocks": scan.cursor.to_block - first.cursor.to_block})
    print(f"{'limit':<22}{'first: requests':>16}{'(refused)':>10}{'ms':>8}{'incremental: requests':>23}{'ms':>6}")
    for r in results:
        print(f"{r['mode']:<22}{r['first_requests']:>16}{r['first_refused']:>10}{r['first_ms']:>8}"
              f"{r['incremental_requests']:>23}{r['incremental_ms']:>6}")
    emit({"bench": "discovery", "blocks": head + 1, "tokens": args.tokens, "new_blocks": args.new_blocks,
          "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
