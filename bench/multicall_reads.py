"""HTTP requests and wall time to read a 250-token wallet from a node, before and after Multicall3.

    .venv/bin/python -m bench.multicall_reads [--tokens 250] [--reads 5] [--before 1973743]

Starts an Anvil node (tests/evm: run ``npm ci --prefix tests/evm`` first) with Multicall3 at its
canonical address and a wallet holding ``--tokens`` TestTokens of assorted decimals, plus a token
without ``decimals()`` and one with a ``bytes32`` symbol.  A relay in front of the node counts requests.

- *after*: this tree's ``RpcProvider``: a first (cold) read, which also reads the tokens' metadata,
  then ``--reads`` warm reads;
- *before*: the ``RpcProvider`` of commit ``--before`` (one ``eth_call`` per ``balanceOf`` in
  JSON-RPC batches of 100), taken with ``git archive`` and run in a child process against the same
  relay, the same way.  (That provider fails the whole chain on a token whose ``balanceOf`` reverts,
  so no such token is in the wallet measured here; the acceptance tests cover it for *after*.)

Prints a table, then one JSON line: HTTP requests, JSON-RPC calls (what providers that bill per call
count) and milliseconds of the cold read and of the median warm read, of each.  On a local node a
request costs no network round trip, so the milliseconds favour many small calls; against a remote
provider each request adds its round trip (often 50-200 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, emit
from chaindata.rpc import RpcProvider
from harness.anvil import plant_many_tokens, recording_relay, running_anvil

HOLDER = "0x00000000000000000000000000000000000a11ce"

#: Run in the child process, inside the old tree: the old provider's reads, timed.
_BEFORE = """
import json, sys, time
from chaindata.rpc import RpcProvider
url, tokens, reads = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
provider = RpcProvider({31337: url}, {31337: tokens}, timeout_s=60)
times = []
for _ in range(1 + reads):
    started = time.perf_counter()
    holdings = provider.fetch_balances(31337, sys.argv[4])
    times.append((time.perf_counter() - started) * 1000)
print(json.dumps({"ms": times, "holdings": len(holdings)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=250)
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--before", default="1973743", help="the commit whose provider is 'before'")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, running_anvil(Path(tmp), 31337) as node:
        node.install_multicall3()
        many = plant_many_tokens(node, HOLDER, count=args.tokens)
        tokens = [t for t in many.all if t != many.reverting]
        node.set_balance(HOLDER, 10**21)
        with recording_relay(node.url) as relay:
            after = _after(relay, tokens, args.reads)
            before = _before(relay, tokens, args.reads, args.before, Path(tmp))
    result = {"bench": "multicall_reads", "tokens": len(tokens), "before": before, "after": after}
    print(f"{len(tokens)} tokens  HTTP requests (cold / warm)  JSON-RPC calls (cold / warm)  ms (cold / warm median)")
    for label, f in (("before", before), ("after", after)):
        print(f"  {label:7} {f['cold_requests']:>10} / {f['warm_requests']:<10} {f['cold_rpc_calls']:>12} / "
              f"{f['warm_rpc_calls']:<12} {f['cold_ms']:>10.1f} / {f['warm_ms']:.1f}")
    emit(result)


def _after(relay, tokens: list[str], reads: int) -> dict:
    provider = RpcProvider({31337: relay.url}, {31337: tokens}, timeout_s=60)
    try:
        relay.requests.clear()
        times, requests, items, holdings = [], [], [], 0
        for _ in range(1 + reads):
            started = time.perf_counter()
            read = provider.read_chain(31337, HOLDER)
            times.append((time.perf_counter() - started) * 1000)
            requests.append(len(relay.requests))
            items.append(sum(_items(r) for r in relay.requests))
            relay.requests.clear()
            holdings = len(read.balances)
    finally:
        provider.close()
    return _figures(times, requests, items, holdings)


def _items(request) -> int:
    """JSON-RPC calls in one request: what providers that bill per call count."""
    body = request.json()
    return len(body) if isinstance(body, list) else 1


def _before(relay, tokens: list[str], reads: int, commit: str, tmp: Path) -> dict:
    tree = tmp / "before"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    relay.requests.clear()
    # The child runs the old tree (its directory first on sys.path); the relay counts every request, and
    # the old provider sends all of a read's requests one after another, so they split by read in order.
    done = subprocess.run([sys.executable, "-c", _BEFORE, relay.url, " ".join(tokens), str(reads), HOLDER],
                          cwd=tree, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the 'before' provider failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    total, total_items = len(relay.requests), sum(_items(r) for r in relay.requests)
    # A warm read is one batch of the native balance and one balanceOf per token, 100 calls a request.
    warm, warm_items = -(-(1 + len(tokens)) // 100), 1 + len(tokens)
    return _figures(out["ms"], [total - warm * reads] + [warm] * reads,
                    [total_items - warm_items * reads] + [warm_items] * reads, out["holdings"])


def _figures(times: list[float], requests: list[int], items: list[int], holdings: int) -> dict:
    return {"cold_ms": round(times[0], 1), "warm_ms": round(statistics.median(times[1:]), 1),
            "cold_requests": requests[0], "warm_requests": max(requests[1:]),
            "cold_rpc_calls": items[0], "warm_rpc_calls": max(items[1:]), "holdings": holdings}


if __name__ == "__main__":
    main()
