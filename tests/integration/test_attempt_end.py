"""The end of an attempt in Redis: the wallet's admission, the completion events and the lease go in
one round trip, and an event Redis refuses is dropped without failing the sync."""

from __future__ import annotations

import logging

import pytest

import actors
import actors.worker
from actors.redis_backed import events
from actors.services import context, lifecycle

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


def _keys(user_id: str, wallet: str, op_id: str) -> dict[str, str]:
    inflight, recent = context.admissions()._keys(user_id, wallet.lower())
    return {"inflight": inflight, "recent": recent, "lease": context.leases().key(op_id)}


def _events_of(redis_client, op_id: str) -> list[str]:
    return [e["type"] for _, e in events.read(redis_client, actors.worker.broker.namespace, count=100_000)
            if e["operation_id"] == op_id]


def test_a_finished_attempt_releases_everything_and_publishes_its_events(user_id, wallet, redis_client):
    op_id = actors.request_sync(user_id, wallet, [1])
    keys = _keys(user_id, wallet, op_id)
    assert redis_client.get(keys["inflight"]).decode() == op_id

    lifecycle.sync_portfolio(op_id)

    assert actors.get_sync(op_id)["status"] == "succeeded"
    assert redis_client.exists(keys["inflight"], keys["lease"]) == 0
    assert redis_client.get(keys["recent"]).decode() == op_id  # the cooldown started
    assert _events_of(redis_client, op_id) == ["sync.succeeded", "portfolio.updated"]


def test_events_redis_refuses_are_dropped_and_the_sync_still_ends(user_id, wallet, redis_client, caplog):
    stream = events.stream_key(actors.worker.broker.namespace)
    saved = redis_client.dump(stream)
    redis_client.delete(stream)
    redis_client.set(stream, "not a stream")  # every XADD now fails with WRONGTYPE
    try:
        op_id = actors.request_sync(user_id, wallet, [1])
        keys = _keys(user_id, wallet, op_id)
        with caplog.at_level(logging.WARNING, logger="actors.services.observe"):
            lifecycle.sync_portfolio(op_id)  # does not raise: the message is acked, not dead-lettered
    finally:
        redis_client.delete(stream)
        if saved is not None:
            redis_client.restore(stream, 0, saved)

    assert actors.get_sync(op_id)["status"] == "succeeded"
    assert redis_client.exists(keys["inflight"], keys["lease"]) == 0
    assert redis_client.get(keys["recent"]).decode() == op_id
    assert any(f"Completion events of operation {op_id} were dropped" in r.getMessage() for r in caplog.records)
