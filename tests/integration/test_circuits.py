"""ChainCircuits on the real Redis: opens after N transient failures, ignores permanent ones,
lets a trial call through after the reset, and never serialises concurrent calls."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from actors.redis_backed.circuits import ChainCircuits
from chaindata.base import PermanentProviderError, TransientProviderError

pytestmark = pytest.mark.integration


@pytest.fixture
def circuits(redis_client):
    from tests.conftest import NAMESPACE

    return ChainCircuits(redis_client, namespace=f"{NAMESPACE}:{uuid.uuid4().hex[:6]}", provider="test",
                         fail_max=3, reset_s=1)


def fail(exc):
    def call():
        raise exc
    return call


def test_opens_after_consecutive_transient_failures_then_lets_a_trial_through(circuits):
    for _ in range(3):
        with pytest.raises(TransientProviderError, match="down"):
            circuits.call(1, fail(TransientProviderError("provider_unavailable", "down")))
    with pytest.raises(TransientProviderError) as excinfo:
        circuits.call(1, lambda: "not called")
    assert excinfo.value.code == "circuit_open" and 0 < circuits.seconds_until_trial(1) <= 1
    assert circuits.call(10, lambda: "other chains are not affected") == "other chains are not affected"

    time.sleep(1.1)
    assert circuits.seconds_until_trial(1) == 0
    with pytest.raises(TransientProviderError, match="still down"):  # the trial fails: open again at once
        circuits.call(1, fail(TransientProviderError("provider_unavailable", "still down")))
    assert circuits.seconds_until_trial(1) > 0
    time.sleep(1.1)
    assert circuits.call(1, lambda: "back") == "back"  # a success closes it
    with pytest.raises(TransientProviderError, match="blip"):
        circuits.call(1, fail(TransientProviderError("provider_unavailable", "blip")))
    assert circuits.call(1, lambda: "still closed") == "still closed"


def test_a_success_resets_the_count_of_consecutive_failures(circuits):
    for _ in range(2):
        for _ in range(2):  # fail_max - 1 failures, then a success: never three in a row
            with pytest.raises(TransientProviderError, match="flaky"):
                circuits.call(1, fail(TransientProviderError("provider_unavailable", "flaky")))
        assert circuits.call(1, lambda: "ok") == "ok"
    assert circuits.seconds_until_trial(1) == 0
    assert circuits.call(1, lambda: "closed") == "closed"


def test_permanent_errors_do_not_count(circuits):
    for _ in range(5):
        with pytest.raises(PermanentProviderError):
            circuits.call(1, fail(PermanentProviderError("provider_rejected", "HTTP 400")))
    assert circuits.call(1, lambda: "closed") == "closed"


def test_concurrent_calls_run_concurrently(circuits):
    started = time.monotonic()
    threads = [threading.Thread(target=circuits.call, args=(1, time.sleep, 0.5)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started < 1.5  # four 0.5 s calls did not queue behind each other
