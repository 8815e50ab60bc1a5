"""The rpc provider through a fault relay in front of a real Anvil node: 429s with Retry-After, per-item
"header not found" / "backend request failed" inside batches, and 413 above 8 items.  Reads still
succeed, exact to the wei, and the faults were really injected (counted by the relay)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from chaindata.base import NATIVE_TOKEN
from chaindata.node_errors import RateLimited
from chaindata.retrying import RetryPolicy, deadline_scope
from chaindata.rpc import RpcProvider
from harness.anvil import Anvil, running_anvil, token_args
from tests.fault_relay import FaultRelay

pytestmark = pytest.mark.integration

WALLET = "0x00000000000000000000000000000000c0ffee13"
NATIVE = 2**200 + 12345  # far more than any float could hold exactly
TOKENS = 20


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    with running_anvil(tmp_path_factory.mktemp("anvil"), 31337) as node:
        yield node


@pytest.fixture(scope="module")
def tokens(anvil: Anvil) -> dict[str, int]:
    """TOKENS tokens of assorted decimals; WALLET holds an odd, exact amount of each."""
    held = {}
    for i in range(TOKENS):
        token = anvil.deploy("TestToken", token_args(f"Relay Token {i}", f"RT{i}", (i * 5) % 25))
        amount = 10**(i + 3) + 7 * i + 1
        anvil.mint(token, WALLET, amount)
        held[token] = amount
    anvil.rpc("anvil_setBalance", WALLET, hex(NATIVE))
    return held


def read(url: str, tokens: list[str], retry: RetryPolicy = RetryPolicy()) -> dict[str, int]:
    """WALLET's balances on the node at ``url``, by token, read by a fresh RpcProvider within a deadline."""
    provider = RpcProvider({31337: url}, {31337: tokens}, timeout_s=5, retry=retry)
    try:
        with deadline_scope(time.monotonic() + 60):
            balances = provider.read_chain(31337, WALLET).balances
    finally:
        provider.close()
    return {b.token_address: b.raw_balance for b in balances}


def test_reads_through_every_fault_stay_exact(anvil: Anvil, tokens: dict[str, int]) -> None:
    expected = {NATIVE_TOKEN: NATIVE, **tokens}
    direct = read(anvil.url, list(tokens))
    assert direct == expected  # the node itself, as a baseline

    with FaultRelay(anvil.url, rate_limited=0.05, retry_after_s=1, item_errors=0.15, header_not_found=0.15,
                    max_batch=8) as relay:
        for _ in range(3):  # the first read also asks metadata (4 calls a token), later ones balances only
            through_relay = read(relay.url, list(tokens), RetryPolicy(tries=6, base_s=0.01, cap_s=0.1))
            assert through_relay == expected

    # Every kind of fault happened, and was survived.
    assert relay.counts["429"] > 0 and relay.counts["413"] > 0 and relay.counts["item_error"] > 0
    assert relay.counts["header_not_found"] > 0
    # After the 413s, batches stayed within what the relay takes.
    batches = [r.json() for r in relay.requests if isinstance(r.json(), list)]
    assert max(len(b) for b in batches[-3:]) <= 8


def test_a_retry_after_is_waited_out(anvil: Anvil, tokens: dict[str, int]) -> None:
    with FaultRelay(anvil.url, refuse_first=1, retry_after_s=1) as relay:
        started = time.monotonic()
        # The first request is refused with Retry-After: 1 and the next let through: the retry waits for the
        # second the server asked for, not for our shorter backoff.
        balances = read(relay.url, list(tokens)[:2], RetryPolicy(tries=3, base_s=0.01, cap_s=0.05))
    assert balances[NATIVE_TOKEN] == NATIVE
    assert relay.counts["429"] == 1 and time.monotonic() - started >= 1.0


def test_without_retries_the_same_faults_fail_the_read(anvil: Anvil, tokens: dict[str, int]) -> None:
    with FaultRelay(anvil.url, max_batch=8) as relay:
        provider = RpcProvider({31337: relay.url}, {31337: list(tokens)}, timeout_s=5, retry=RetryPolicy(tries=1))
        try:
            # A 413 is survived by splitting even without retries (it is no failure of the node) ...
            assert provider.read_chain(31337, WALLET).balances[0].raw_balance == NATIVE
        finally:
            provider.close()
    with FaultRelay(anvil.url, rate_limited=1.0) as relay:
        provider = RpcProvider({31337: relay.url}, {31337: list(tokens)}, timeout_s=5, retry=RetryPolicy(tries=1))
        try:
            # ... but a 429 with one try allowed is the attempt's failure, transient.
            with pytest.raises(RateLimited) as caught:
                provider.read_chain(31337, WALLET).balances
        finally:
            provider.close()
    assert caught.value.code == "provider_rate_limited" and caught.value.retry_after_s == 1
