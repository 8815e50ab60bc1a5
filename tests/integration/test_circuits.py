"""ChainCircuits on the real Redis: opens on a failure *rate* over a window (not on a few random errors),
ignores permanent errors, lets exactly one trial through when half-open, and never serialises calls."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest

from actors.redis_backed.circuits import ChainCircuits
from chaindata.base import PermanentProviderError, TransientProviderError
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def make(redis_client, **overrides) -> ChainCircuits:
    from tests.conftest import NAMESPACE

    params = {"failure_rate": 0.5, "min_calls": 20, "window_s": 30, "reset_s": 1} | overrides
    return ChainCircuits(redis_client, namespace=f"{NAMESPACE}:{uuid.uuid4().hex[:6]}", provider="test", **params)


@pytest.fixture
def circuits(redis_client):
    return make(redis_client)


def fail(exc):
    def call():
        raise exc
    return call


DOWN = TransientProviderError("provider_unavailable", "down")


def outcome(circuits, chain_id, ok: bool):
    """One call that succeeds or fails transiently; True if the circuit let it through."""
    try:
        circuits.call(chain_id, (lambda: "ok") if ok else fail(DOWN))
    except TransientProviderError as exc:
        return exc.code != "circuit_open"
    return True


def test_a_handful_of_random_errors_do_not_open_it(circuits):
    # 30% transient failures over 200 calls: well under the 50% rate, never open.
    rng = random.Random(7)
    let_through = [outcome(circuits, 1, rng.random() >= 0.3) for _ in range(200)]
    assert all(let_through) and circuits.seconds_until_trial(1) == 0


def test_too_few_calls_are_not_judged(circuits):
    for _ in range(19):  # every call failed, but 19 < min_calls
        assert outcome(circuits, 1, ok=False)
    assert circuits.seconds_until_trial(1) == 0


def test_opens_on_the_failure_rate_over_the_window(circuits):
    for i in range(20):
        assert outcome(circuits, 1, ok=i % 2 == 0)  # 10 of 20 failed: 50%, the 20th call opens it
    assert 0 < circuits.seconds_until_trial(1) <= 1
    with pytest.raises(TransientProviderError) as excinfo:
        circuits.call(1, lambda: "not called")
    assert excinfo.value.code == "circuit_open"
    assert circuits.call(10, lambda: "other chains are not affected") == "other chains are not affected"


def test_old_calls_leave_the_window(redis_client):
    circuits = make(redis_client, min_calls=4, window_s=1)
    for _ in range(3):
        assert outcome(circuits, 1, ok=False)
    time.sleep(2.1)  # those three failures are out of the window now
    assert outcome(circuits, 1, ok=True)
    assert outcome(circuits, 1, ok=False)  # 1 of 2 in the window: too few calls to judge
    assert circuits.seconds_until_trial(1) == 0


def trip(circuits, chain_id=1):
    for _ in range(circuits.min_calls):
        outcome(circuits, chain_id, ok=False)
    assert circuits.seconds_until_trial(chain_id) > 0


def test_half_open_lets_exactly_one_trial_through_across_threads(circuits):
    trip(circuits)
    time.sleep(1.1)  # open -> half-open
    release = threading.Event()
    calls, turned_away = [], []

    def slow_trial():
        calls.append(1)
        release.wait(5)
        return "back"

    def caller():
        try:
            circuits.call(1, slow_trial)
        except TransientProviderError as exc:
            turned_away.append(exc.code)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: len(turned_away) >= 7, 5, f"not 7 of 8 turned away: {turned_away}")
    assert len(calls) == 1 and turned_away == ["circuit_open"] * 7  # one trial; the rest wait for it
    release.set()
    for t in threads:
        t.join()
    assert circuits.call(1, lambda: "closed") == "closed"  # the trial succeeded: closed again
    assert circuits.seconds_until_trial(1) == 0


def test_a_failed_trial_reopens_it_at_once_and_a_later_success_closes_it(circuits):
    trip(circuits)
    time.sleep(1.1)
    with pytest.raises(TransientProviderError, match="still down"):
        circuits.call(1, fail(TransientProviderError("provider_unavailable", "still down")))
    assert circuits.seconds_until_trial(1) > 0
    with pytest.raises(TransientProviderError) as excinfo:
        circuits.call(1, lambda: "not called")
    assert excinfo.value.code == "circuit_open"
    time.sleep(1.1)
    assert circuits.call(1, lambda: "back") == "back"
    # Closed with a clean window: one failure after it is one failure, not a reopening.
    assert outcome(circuits, 1, ok=False) and outcome(circuits, 1, ok=True)


def test_permanent_errors_do_not_count(circuits):
    for _ in range(40):
        with pytest.raises(PermanentProviderError):
            circuits.call(1, fail(PermanentProviderError("provider_rejected", "HTTP 400")))
    assert circuits.call(1, lambda: "closed") == "closed"


def test_state_is_shared_between_instances(redis_client):
    first = make(redis_client)
    second = ChainCircuits(redis_client, namespace=first.namespace, provider="test", failure_rate=0.5,
                           min_calls=20, window_s=30, reset_s=1)
    trip(first)
    with pytest.raises(TransientProviderError) as excinfo:
        second.call(1, lambda: "not called")
    assert excinfo.value.code == "circuit_open"


def test_concurrent_calls_run_concurrently(circuits):
    started = time.monotonic()
    threads = [threading.Thread(target=circuits.call, args=(1, time.sleep, 0.5)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < 1.5  # four 0.5 s calls did not queue behind each other


@pytest.mark.parametrize("code", ["budget_exhausted", "circuit_open", "time_limit_exceeded"])
def test_errors_decided_on_our_side_do_not_count(circuits, code):
    # A busy rate budget, say: no request was made, so the provider's health is not in question.
    for _ in range(40):
        with pytest.raises(TransientProviderError):
            circuits.call(1, fail(TransientProviderError(code, "not sent")))
    assert circuits.seconds_until_trial(1) == 0
    assert circuits.call(1, lambda: "closed") == "closed"


def test_a_trial_that_sent_nothing_frees_it_unjudged(circuits):
    trip(circuits)
    time.sleep(1.1)  # half-open: the next caller holds the trial
    with pytest.raises(TransientProviderError) as excinfo:
        circuits.call(1, fail(TransientProviderError("budget_exhausted", "not sent")))
    assert excinfo.value.code == "budget_exhausted"
    # Not reopened, and the trial is free: the very next caller gets it, and its success closes the circuit.
    assert circuits.seconds_until_trial(1) == 0
    assert circuits.call(1, lambda: "trial") == "trial"
    assert outcome(circuits, 1, ok=False)  # closed with a clean window


def test_a_late_caller_whose_lease_expired_does_not_free_the_new_holders_trial(circuits):
    trip(circuits)
    time.sleep(1.1)
    first_may_end, second_in, second_may_end = threading.Event(), threading.Event(), threading.Event()

    def first_trial():
        first_may_end.wait(5)
        raise RuntimeError("a bug of ours, after the lease expired")

    def second_trial():
        second_in.set()
        second_may_end.wait(5)
        return "back"

    first = threading.Thread(target=lambda: pytest.raises(RuntimeError, circuits.call, 1, first_trial))
    first.start()
    time.sleep(1.2)  # the first trial's lease (reset_s = 1) has expired: a second caller gets the trial
    second = threading.Thread(target=circuits.call, args=(1, second_trial))
    second.start()
    assert second_in.wait(5)
    first_may_end.set()
    first.join()
    try:
        with pytest.raises(TransientProviderError) as excinfo:  # the second caller still holds the trial
            circuits.call(1, lambda: "a second trial at once")
        assert excinfo.value.code == "circuit_open"
    finally:
        second_may_end.set()
        second.join()
    assert circuits.call(1, lambda: "closed") == "closed"  # the holder's success closed it
