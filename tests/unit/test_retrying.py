"""call_with_retries: a first try that succeeds or fails for good is a plain call; a retryable error enters the
retry loop as its first try, so the tries, the waits and ``on_retry`` are those of a loop from the start."""

from __future__ import annotations

import time

import pytest
import tenacity

from chaindata.base import PermanentProviderError, TransientProviderError
from chaindata.node_errors import RateLimited
from chaindata.retrying import RetryPolicy, call_with_retries

FAST = RetryPolicy(tries=3, base_s=0.001, cap_s=0.002)
DOWN = TransientProviderError("provider_unavailable", "down")


def sequence(*outcomes):
    """A function returning or raising each of ``outcomes`` in turn; ``calls`` counts its calls."""
    pending = list(outcomes)

    def fn():
        fn.calls += 1
        outcome = pending.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    fn.calls = 0
    return fn


@pytest.fixture
def no_tenacity(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the retry loop was built")
    monkeypatch.setattr(tenacity, "Retrying", refuse)


def far() -> float:
    return time.monotonic() + 60


def test_a_first_try_that_succeeds_builds_no_retry_loop(no_tenacity):
    fn = sequence("answer")
    assert call_with_retries(fn, policy=FAST, deadline=far()) == "answer"
    assert fn.calls == 1


@pytest.mark.parametrize("error", [PermanentProviderError("bad_request", "no"),
                                   TransientProviderError("circuit_open", "not here")])
def test_an_error_not_retried_here_is_raised_at_once_without_a_loop(no_tenacity, error):
    fn = sequence(error, "never")
    with pytest.raises(type(error)) as raised:
        call_with_retries(fn, policy=FAST, deadline=far())
    assert raised.value is error
    assert fn.calls == 1


def test_a_transient_error_is_tried_again_and_reported_once():
    fn, retried = sequence(DOWN, "answer"), []
    assert call_with_retries(fn, policy=FAST, deadline=far(), on_retry=retried.append) == "answer"
    assert fn.calls == 2
    assert retried == [DOWN]


def test_the_first_try_counts_among_the_tries_and_the_last_error_is_raised():
    last = TransientProviderError("provider_unavailable", "still down")
    fn, retried = sequence(DOWN, DOWN, last, "never"), []
    with pytest.raises(TransientProviderError) as raised:
        call_with_retries(fn, policy=FAST, deadline=far(), on_retry=retried.append)
    assert raised.value is last
    assert fn.calls == 3
    assert retried == [DOWN, DOWN]


def test_no_retry_waits_past_the_deadline():
    fn = sequence(RateLimited("rate_limited", "slow down", retry_after_s=5.0), "never")
    with pytest.raises(RateLimited):
        call_with_retries(fn, policy=FAST, deadline=time.monotonic() + 1)
    assert fn.calls == 1


def test_a_retry_after_is_a_floor_of_the_first_wait():
    fn = sequence(RateLimited("rate_limited", "slow down", retry_after_s=0.3), "answer")
    started = time.monotonic()
    assert call_with_retries(fn, policy=FAST, deadline=far()) == "answer"
    assert time.monotonic() - started >= 0.3
    assert fn.calls == 2
