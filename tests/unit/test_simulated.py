import pytest

from chaindata.base import NATIVE_TOKEN, TransientProviderError
from chaindata.prices import StaticPriceTable
from chaindata.retrying import RetryPolicy
from chaindata.simulated import SimulatedProvider


def test_balances_are_deterministic_per_wallet_and_chain():
    p = SimulatedProvider(latency_ms=0)
    wallet = "0x" + "ab" * 20
    assert p.read_chain(1, wallet).balances == p.read_chain(1, wallet).balances
    assert p.read_chain(1, wallet).balances != p.read_chain(10, wallet).balances
    assert p.read_chain(1, wallet).balances != p.read_chain(1, "0x" + "cd" * 20).balances
    balances = p.read_chain(137, wallet).balances
    assert balances[0].token_address == NATIVE_TOKEN and balances[0].symbol == "POL"
    assert all(isinstance(b.raw_balance, int) and b.raw_balance > 0 for b in balances)


def test_tokens_per_chain_bounds_the_list():
    p = SimulatedProvider(latency_ms=0, tokens_per_chain=20)
    sizes = {len(p.read_chain(1, "0x" + f"{i:040x}").balances) for i in range(50)}
    assert max(sizes) <= 1 + 20 + 1  # native + tokens + the occasional unpriced airdrop
    assert max(sizes) > 13


def test_failure_rate_and_seed():
    with pytest.raises(TransientProviderError) as excinfo:
        SimulatedProvider(latency_ms=0, failure_rate=1.0).read_chain(1, "0x" + "1" * 40)
    assert excinfo.value.code == "provider_unavailable"
    runs = []
    for _ in range(2):
        p = SimulatedProvider(latency_ms=0, failure_rate=0.5, seed=42)
        outcome = []
        for _ in range(20):
            try:
                p.read_chain(1, "0x" + "1" * 40)
                outcome.append(True)
            except TransientProviderError:
                outcome.append(False)
        runs.append(outcome)
    assert runs[0] == runs[1] and True in runs[0] and False in runs[0]


def test_static_prices_know_the_simulated_tokens_but_not_the_airdrop():
    p = SimulatedProvider(latency_ms=0)
    for i in range(30):
        balances = p.read_chain(1, "0x" + f"{i:040x}").balances
        prices = StaticPriceTable().get_prices(1, [b.token_address for b in balances])
        for b in balances:
            assert (b.token_address in prices) == (b.symbol != "AIRDROP")


def test_a_simulated_read_has_no_block_and_makes_no_request():
    read = SimulatedProvider(latency_ms=0).read_chain(1, "0x" + "ab" * 20)
    assert (read.chain_id, read.block_number, read.requests, tuple(read.token_errors)) == (1, None, 0, ())


def test_a_failed_call_is_retried_within_the_attempt_as_its_policy_says():
    retried = SimulatedProvider(latency_ms=0, failure_rate=0.5, seed=7,
                                retry=RetryPolicy(tries=10, base_s=0.0001, cap_s=0.0001))
    assert all(retried.read_chain(1, "0x" + f"{i:040x}").balances for i in range(20))  # 0.5**10 each: none fail
    once = SimulatedProvider(latency_ms=0, failure_rate=0.5, seed=7)
    failures = 0
    for i in range(20):
        try:
            once.read_chain(1, "0x" + f"{i:040x}")
        except TransientProviderError:
            failures += 1
    assert failures > 0  # the same draws, without retries
