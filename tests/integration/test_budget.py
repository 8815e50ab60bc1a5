"""ProviderBudget on the real Redis: requests/s and units/s shared by every client, Retry-After pauses."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from chaindata.base import TransientProviderError
from chaindata.budget import BudgetLimits, ProviderBudget, send_within_budget
from chaindata.node_errors import RateLimited
from chaindata.retrying import deadline_scope

pytestmark = pytest.mark.integration


def budget(redis_client, namespace: str, **limits) -> ProviderBudget:
    return ProviderBudget(redis_client, namespace=namespace, provider="test", limits=BudgetLimits(**limits))


@pytest.fixture
def namespace():
    from tests.conftest import NAMESPACE

    return f"{NAMESPACE}:{uuid.uuid4().hex[:6]}"


def test_requests_per_second_are_shared_by_every_client(redis_client, namespace):
    # Four "workers", each with its own ProviderBudget, 10 requests/s between them all.
    clients = [budget(redis_client, namespace, requests_per_s=10) for _ in range(4)]
    sent: list[float] = []
    lock = threading.Lock()

    def worker(b: ProviderBudget):
        for _ in range(8):
            b.spend()
            with lock:
                sent.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(b,)) for b in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    # 32 requests, a burst of 10 at once, then 10 a second: at least 2.2 s, and not much longer.
    assert len(sent) == 32
    assert 2.0 <= elapsed < 4.0, elapsed
    # No second of the run holds more than the burst plus one second's rate.
    assert max(sum(1 for s in sent if t <= s < t + 1) for t in sent) <= 20


def test_compute_units_are_budgeted_apart_from_requests(redis_client, namespace):
    b = budget(redis_client, namespace, units_per_s=100)
    started = time.monotonic()
    for _ in range(4):
        b.spend(units=50)  # 200 units at 100/s: the first 100 at once, then about a second more
    assert 0.9 <= time.monotonic() - started < 2.0


def test_unlimited_never_waits(redis_client, namespace):
    b = budget(redis_client, namespace)
    started = time.monotonic()
    for _ in range(200):
        b.spend(units=30)
    assert time.monotonic() - started < 1.0


def test_a_pause_stops_every_client_until_it_ends(redis_client, namespace):
    first, second = budget(redis_client, namespace), budget(redis_client, namespace)
    first.pause(1.0)
    first.pause(0.2)  # a shorter pause does not cut the longer one short
    assert 0.8 < second.paused_for_s() <= 1.0
    started = time.monotonic()
    second.spend()
    assert time.monotonic() - started >= 0.9


def test_no_wait_past_the_deadline(redis_client, namespace):
    b = budget(redis_client, namespace)
    b.pause(5)
    started = time.monotonic()
    with pytest.raises(TransientProviderError) as caught:
        b.spend(deadline=time.monotonic() + 0.5)
    assert caught.value.code == "budget_exhausted" and time.monotonic() - started < 0.5


def test_send_within_budget_spends_before_sending_and_a_retry_after_pauses_everyone(redis_client, namespace):
    shared = budget(redis_client, namespace, requests_per_s=1000, units_per_s=10)
    sent: list[str] = []

    def rate_limited():
        sent.append("429")
        raise RateLimited("provider_rate_limited", "HTTP 429", retry_after_s=0.5)

    with pytest.raises(RateLimited):
        send_within_budget(shared, rate_limited, units=10)  # the whole second's units spent, then sent
    assert sent == ["429"] and shared.paused_for_s() > 0.3
    other_worker = budget(redis_client, namespace, requests_per_s=1000, units_per_s=10)
    with deadline_scope(time.monotonic() + 0.2):  # the pause outlasts this attempt: nothing is sent
        with pytest.raises(TransientProviderError) as excinfo:
            send_within_budget(other_worker, lambda: sent.append("not sent"))
    assert excinfo.value.code == "budget_exhausted" and sent == ["429"]
    assert send_within_budget(None, lambda: "no budget, sent at once") == "no budget, sent at once"
