"""AttemptReads on the real Redis: every chain read of an attempt in two round trips, each chain's gates as alone
(its shared read and lock, its circuit and half-open trial, its cached values), reads running concurrently,
and what the attempt's end cannot take (a read still running, a read never begun) ended all the same."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid

import pytest

from actors.redis_backed.attempt_reads import AttemptReads
from chaindata.base import TransientProviderError
from tests.integration.test_chain_reads import DOWN, Counting, calls_counted, fail, make, open_circuit, read
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CHAINS = (1, 10, 137, 8453, 42161)


def names(wallet: str, chains=CHAINS) -> list[tuple[int, str]]:
    return [(chain_id, f"test:{chain_id}:{wallet}") for chain_id in chains]


def run(attempt: AttemptReads, providers: dict, *, keys=lambda chain_id: (lambda _answer: []), deadline_s=10.0):
    """Each chain's read on its own thread, then the attempt's end, as the worker runs them: ({chain: answer or
    error}, what the end returned)."""
    deadline = time.monotonic() + deadline_s
    with concurrent.futures.ThreadPoolExecutor(len(providers)) as pool:
        futures = {chain_id: pool.submit(attempt.read, chain_id, provider, deadline=deadline,
                                         cache_keys=keys(chain_id))
                   for chain_id, provider in providers.items()}
        concurrent.futures.wait(futures.values())
    outcomes = {chain_id: future.exception() or future.result() for chain_id, future in futures.items()}
    return outcomes, attempt.end()


def test_five_chains_take_two_round_trips_and_bring_their_cached_values(redis_client):
    reads = make(redis_client, lock_ms=60_000)  # no lock renewal among the commands counted
    run(AttemptReads.start(reads, names("warm-up")), {c: lambda: b"x" for c in CHAINS})  # loads the scripts
    price = f"{reads.shared.namespace}:price:{uuid.uuid4().hex}"
    redis_client.set(price, b"1.25")
    counting = Counting(redis_client)
    attempt = AttemptReads.start(reads, names(uuid.uuid4().hex))
    outcomes, cached = run(attempt, {c: (lambda c=c: f"balances {c}".encode()) for c in CHAINS},
                           keys=lambda c: lambda answer: [price, f"{price}:{c}"])
    assert {c: (a.answer, a.shared, a.cached) for c, a in outcomes.items()} == {
        c: (f"balances {c}".encode(), False, None) for c in CHAINS}
    assert cached == {c: [b"1.25", None] for c in CHAINS}
    assert counting.sent == ["EVALSHA", "EVALSHA"]  # start, end
    for c in CHAINS:
        assert redis_client.hlen(reads.circuits.keys(c)[0]) > 0  # each chain's call counted in its circuit
    assert calls_counted(reads) == 2  # chain 1: the warm-up's call and this one's


def test_a_read_found_shared_needs_no_end_of_its_own(redis_client):
    reads, wallet = make(redis_client), uuid.uuid4().hex
    read(reads, f"test:1:{wallet}", lambda: b"made by another sync")
    counting = Counting(redis_client)
    attempt = AttemptReads.start(reads, names(wallet, (1, 10)))
    outcomes, cached = run(attempt, {1: fail(AssertionError("not read again")), 10: lambda: b"read now"},
                           keys=lambda c: lambda answer: [f"{reads.shared.namespace}:price:{answer.decode()}"])
    assert (outcomes[1].answer, outcomes[1].shared) == (b"made by another sync", True)
    assert (outcomes[10].answer, outcomes[10].shared) == (b"read now", False)
    assert cached == {1: [None], 10: [None]}
    assert counting.sent == ["EVALSHA", "EVALSHA"]


def test_the_reads_run_concurrently(redis_client):
    reads = make(redis_client)
    attempt = AttemptReads.start(reads, names(uuid.uuid4().hex))
    started = time.monotonic()

    def slow() -> bytes:
        time.sleep(0.3)
        return b"slow"

    outcomes, _ = run(attempt, {c: slow for c in CHAINS})
    assert all(a.answer == b"slow" for a in outcomes.values())
    assert time.monotonic() - started < 1.0  # five reads of 0.3 s each, not one after another


def test_a_failed_chain_is_recorded_in_its_circuit_and_the_others_are_stored(redis_client):
    reads, wallet = make(redis_client), uuid.uuid4().hex
    attempt = AttemptReads.start(reads, names(wallet, (1, 10)))
    outcomes, _ = run(attempt, {1: fail(DOWN), 10: lambda: b"fine"})
    assert outcomes[1] is DOWN and outcomes[10].answer == b"fine"
    stats = redis_client.hgetall(reads.circuits.keys(1)[0])
    assert sum(int(v) for k, v in stats.items() if k.startswith(b"f")) == 1
    assert redis_client.get(reads.shared.keys(f"test:1:{wallet}")[0]) is None  # a failed read is not shared
    assert redis_client.exists(reads.shared.keys(f"test:1:{wallet}")[1]) == 0  # its lock is released
    assert redis_client.get(reads.shared.keys(f"test:10:{wallet}")[0]) == b"fine"


def test_a_chain_another_sync_is_reading_waits_for_it(redis_client):
    reads, wallet = make(redis_client), uuid.uuid4().hex
    calls = []

    def slow() -> bytes:
        calls.append(1)
        time.sleep(0.5)
        return b"one read"

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        other = pool.submit(read, reads, f"test:1:{wallet}", slow)
        wait_until(lambda: calls, 5, "the other sync never called its provider")  # it holds the chain's lock
        outcomes, cached = run(AttemptReads.start(reads, names(wallet, (1,))), {1: slow})
        assert other.result().answer == b"one read"
    assert (outcomes[1].answer, outcomes[1].shared, outcomes[1].cached) == (b"one read", True, [])
    assert cached == {} and len(calls) == 1


def test_an_open_circuit_turns_its_chain_away_and_leaves_no_lock(redis_client):
    reads, wallet = make(redis_client), uuid.uuid4().hex
    open_circuit(reads)  # chain 1's
    outcomes, _ = run(AttemptReads.start(reads, names(wallet, (1, 10))),
                      {1: fail(AssertionError("the provider is not called")), 10: lambda: b"fine"})
    assert outcomes[1].code == "circuit_open" and outcomes[10].answer == b"fine"
    assert redis_client.exists(reads.shared.keys(f"test:1:{wallet}")[1]) == 0


def test_half_open_lets_one_trial_through_across_attempts(redis_client):
    reads = make(redis_client)
    open_circuit(reads)
    time.sleep(1.1)  # reset_s: half-open
    calls, turned_away = [], []
    start, others_done = threading.Barrier(5), threading.Event()

    def trial() -> bytes:
        calls.append(1)
        others_done.wait(5)  # the trial is still out while the four others try
        return b"the provider is back"

    def sync():
        start.wait()
        outcome = run(AttemptReads.start(reads, names(uuid.uuid4().hex, (1,))), {1: trial})[0][1]
        if isinstance(outcome, TransientProviderError):
            turned_away.append(1)
            if len(turned_away) == 4:
                others_done.set()
            return outcome.code
        return outcome.answer

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        outcomes = list(pool.map(lambda _: sync(), range(5)))
    assert (outcomes.count(b"the provider is back"), outcomes.count("circuit_open")) == (1, 4)
    assert len(calls) == 1
    assert read(reads, uuid.uuid4().hex, lambda: b"closed").answer == b"closed"  # the trial closed it


def test_a_read_still_running_at_the_end_ends_itself_when_done(redis_client):
    reads, wallet = make(redis_client, lock_ms=300), uuid.uuid4().hex
    open_circuit(reads)
    time.sleep(1.1)  # half-open: this read takes the trial
    attempt = AttemptReads.start(reads, names(wallet, (1,)))
    release = threading.Event()

    def late() -> bytes:
        release.wait(5)
        return b"late answer"

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(attempt.read, 1, late, deadline=time.monotonic() + 10, cache_keys=lambda _a: [])
        time.sleep(0.6)  # two lock lifetimes: renewed while the read runs
        assert attempt.end() == {}  # the deadline passed: the end leaves this read to end itself
        assert redis_client.exists(reads.shared.keys(f"test:1:{wallet}")[1]) == 1
        release.set()
        assert future.result().answer == b"late answer"
    key, lock = reads.shared.keys(f"test:1:{wallet}")
    assert redis_client.get(key) == b"late answer"  # shared, its lock released, the trial judged
    assert redis_client.exists(lock) == 0
    assert reads.circuits.seconds_until_trial(1) == 0
    assert redis_client.exists(reads.circuits.keys(1)[2]) == 0  # the trial closed the circuit


def test_a_read_that_never_began_frees_its_lock_and_its_trial_unjudged(redis_client):
    reads, wallet = make(redis_client), uuid.uuid4().hex
    open_circuit(reads)
    time.sleep(1.1)
    attempt = AttemptReads.start(reads, names(wallet, (1,)))
    assert redis_client.exists(reads.circuits.keys(1)[3]) == 1  # it holds the trial
    assert attempt.end() == {1: []}  # ended, with no cached values to bring
    assert redis_client.exists(reads.shared.keys(f"test:1:{wallet}")[1]) == 0
    assert redis_client.exists(reads.circuits.keys(1)[3]) == 0  # the trial is free again...
    assert redis_client.exists(reads.circuits.keys(1)[2]) == 1  # ...and the circuit still tripped
    with pytest.raises(TransientProviderError) as late:  # a thread that begins after the end reads nothing
        attempt.read(1, fail(AssertionError("not read")), deadline=time.monotonic() + 1, cache_keys=lambda _a: [])
    assert late.value.code == "time_limit_exceeded"
