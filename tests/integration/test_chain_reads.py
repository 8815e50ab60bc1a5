"""ChainReads on the real Redis: a chain read in two round trips that keeps each gate's behaviour (the shared
read and its renewed lock, the circuit's single half-open trial, the cached values)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid

import pytest

from actors.redis_backed.chain_reads import ChainReads
from actors.redis_backed.circuits import ChainCircuits
from actors.redis_backed.shared_reads import SharedReads
from chaindata.base import TransientProviderError
from tests.conftest import NAMESPACE

pytestmark = pytest.mark.integration

DOWN = TransientProviderError("provider_unavailable", "down")


def make(redis_client, *, window_ms: int = 5000, lock_ms: int = 3000) -> ChainReads:
    namespace = f"{NAMESPACE}:{uuid.uuid4().hex[:6]}"
    return ChainReads(redis_client,
                      shared=SharedReads(redis_client, namespace=namespace, window_ms=window_ms, lock_ms=lock_ms),
                      circuits=ChainCircuits(redis_client, namespace=namespace, provider="test", failure_rate=0.5,
                                             min_calls=3, window_s=30, reset_s=1))


def wallet() -> str:
    return f"test:1:{uuid.uuid4().hex}"


def no_keys(_answer: bytes) -> list[str]:
    return []


def read(reads: ChainReads, what: str, provider, *, keys=no_keys, chain_id: int = 1):
    return reads.read(chain_id, what, provider, deadline=time.monotonic() + 10, cache_keys=keys)


def fail(exc):
    def call() -> bytes:
        raise exc
    return call


def open_circuit(reads: ChainReads) -> None:
    """Fail reads until the circuit opens (min_calls = 3, rate 0.5: within three)."""
    for _ in range(3):
        with pytest.raises(TransientProviderError, match="down"):
            read(reads, wallet(), fail(DOWN))
        if reads.circuits.seconds_until_trial(1) > 0:
            return
    pytest.fail("three failed reads in three did not open the circuit")


class Counting:
    """Counts the commands a client sends (a script call, an MGET: one round trip each)."""

    def __init__(self, client):
        self.sent: list[str] = []
        original = client.execute_command

        def execute_command(*args, **options):
            self.sent.append(str(args[0]))
            return original(*args, **options)

        client.execute_command = execute_command


@pytest.mark.parametrize("window_ms", [5000, 0])
def test_a_read_takes_two_round_trips_and_brings_its_cached_values(redis_client, window_ms):
    reads = make(redis_client, window_ms=window_ms, lock_ms=60_000)  # no lock renewal among the commands counted
    read(reads, wallet(), lambda: b"warm-up")  # loads the scripts
    price_key = f"{reads.shared.namespace}:price:{uuid.uuid4().hex}"
    redis_client.set(price_key, b"1.25")
    counting = Counting(redis_client)
    answer = read(reads, wallet(), lambda: b"balances", keys=lambda answer: [price_key, price_key + ":none"])
    assert (answer.answer, answer.shared, answer.cached) == (b"balances", False, [b"1.25", None])
    assert counting.sent == ["EVALSHA", "EVALSHA"]  # start, end
    assert calls_counted(reads) == 2  # the warm-up's and this one's


def calls_counted(reads: ChainReads) -> int:
    stats = reads.circuits.client.hgetall(reads.circuits.keys(1)[0])
    return sum(int(count) for field, count in stats.items() if field.startswith(b"c"))


def test_a_shared_read_takes_no_circuit_and_one_mget(redis_client):
    reads, what = make(redis_client), wallet()
    read(reads, what, lambda: b"balances")
    counting = Counting(redis_client)
    answer = read(reads, what, lambda: b"not read again", keys=lambda answer: [answer.decode()])
    assert (answer.answer, answer.shared, answer.cached) == (b"balances", True, [None])
    assert counting.sent == ["EVALSHA", "MGET"]


def test_twenty_concurrent_reads_make_one_call_counted_once_by_the_circuit(redis_client):
    reads, what = make(redis_client), wallet()
    calls = []
    start = threading.Barrier(20)

    def provider() -> bytes:
        calls.append(1)
        time.sleep(0.3)
        return b"balances at block 7"

    def sync():
        start.wait()
        return read(reads, what, provider)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: sync(), range(20)))
    assert len(calls) == 1
    assert sorted(a.shared for a in answers) == [False] + [True] * 19
    assert calls_counted(reads) == 1


def test_the_lock_is_renewed_while_a_slow_read_is_made(redis_client):
    reads, what = make(redis_client, lock_ms=300), wallet()
    calls = []

    def slow() -> bytes:
        calls.append(1)
        time.sleep(1.0)  # three lock lifetimes: only renewal keeps the lock
        return b"slow answer"

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(read, reads, what, slow)
        time.sleep(0.1)
        second = pool.submit(read, reads, what, slow)
        assert (first.result().answer, first.result().shared) == (b"slow answer", False)
        assert (second.result().answer, second.result().shared) == (b"slow answer", True)
    assert len(calls) == 1


def test_a_stored_read_is_served_while_the_circuit_is_open(redis_client):
    reads, what = make(redis_client), wallet()
    read(reads, what, lambda: b"read before the outage")
    open_circuit(reads)
    answer = read(reads, what, fail(AssertionError("the provider is not called")))
    assert (answer.answer, answer.shared) == (b"read before the outage", True)


def test_a_refused_read_leaves_no_lock_and_no_wait(redis_client):
    reads, what = make(redis_client), wallet()
    open_circuit(reads)
    with pytest.raises(TransientProviderError) as refused:
        read(reads, what, fail(AssertionError("the provider is not called")))
    assert refused.value.code == "circuit_open"
    _key, lock = reads.shared.keys(what)
    assert redis_client.exists(lock) == 0


def test_half_open_lets_one_trial_through_across_wallets(redis_client):
    reads = make(redis_client)
    open_circuit(reads)
    time.sleep(1.1)  # reset_s: half-open
    calls = []
    start = threading.Barrier(5)

    def trial() -> bytes:
        calls.append(1)
        time.sleep(0.3)
        return b"the provider is back"

    def sync():
        start.wait()
        try:
            return read(reads, wallet(), trial).answer
        except TransientProviderError as exc:
            return exc.code

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        outcomes = list(pool.map(lambda _: sync(), range(5)))
    assert (outcomes.count(b"the provider is back"), outcomes.count("circuit_open")) == (1, 4)
    assert len(calls) == 1
    assert read(reads, wallet(), lambda: b"closed").answer == b"closed"  # the trial closed it


def test_a_failed_trial_reopens_the_circuit(redis_client):
    reads = make(redis_client)
    open_circuit(reads)
    time.sleep(1.1)
    with pytest.raises(TransientProviderError, match="down"):
        read(reads, wallet(), fail(DOWN))
    with pytest.raises(TransientProviderError) as refused:
        read(reads, wallet(), fail(AssertionError("the provider is not called")))
    assert refused.value.code == "circuit_open"


@pytest.mark.parametrize("not_the_provider", [TransientProviderError("budget_exhausted", "not sent"),
                                              RuntimeError("a bug of ours")])
def test_a_trial_the_provider_never_saw_is_freed_unjudged(redis_client, not_the_provider):
    reads = make(redis_client)
    open_circuit(reads)
    time.sleep(1.1)
    with pytest.raises(type(not_the_provider)):
        read(reads, wallet(), fail(not_the_provider))
    assert redis_client.exists(reads.circuits.keys(1)[3]) == 0  # the trial is free again...
    assert redis_client.exists(reads.circuits.keys(1)[2]) == 1  # ...and the circuit still tripped
    assert read(reads, wallet(), lambda: b"the next trial").answer == b"the next trial"
