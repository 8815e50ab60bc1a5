"""The end of an attempt in Redis: the wallet's admission, the completion events, the lease and the
message's ack go in one round trip, and an event Redis refuses is dropped without failing the sync."""

from __future__ import annotations

import logging
import uuid

import pytest
import redis
from dramatiq.middleware import CurrentMessage

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


# ------------------------------------------------------------ the ack on the attempt's last round trip --

def _delivered(queue: str = "sync"):
    """The consumer of ``queue`` and the next message it hands a worker thread."""
    consumer = actors.worker.broker.consume(queue, prefetch=1, timeout=200)
    for _ in range(50):
        message = next(consumer)
        if message is not None:
            return consumer, message
    raise AssertionError(f"no message came from {queue!r}")


def _in_flight(consumer, message) -> bool:
    broker = actors.worker.broker
    acks = f"{broker.namespace}:__acks__.{broker.broker_id}.{consumer.queue_name}"
    return bool(broker.client.sismember(acks, message.options["redis_message_id"]))


def _process(message, call) -> None:
    """``call()`` as a worker thread runs the actor of ``message``: with it as the current message."""
    current = CurrentMessage()
    current.before_process_message(actors.worker.broker, message)
    try:
        call()
    finally:
        current.after_process_message(actors.worker.broker, message)


def _round_trips(monkeypatch) -> list[list[str]]:
    """The commands of each of lifecycle's pipelines, as they are sent (EVALSHA's script digest for a script)."""
    sent: list[list[str]] = []
    real_execute = lifecycle.redis_scripts.execute

    def execute(pipeline):
        sent.append([args[1] if args[0] == "EVALSHA" else args[0] for args, _ in pipeline.command_stack])
        return real_execute(pipeline)

    monkeypatch.setattr(lifecycle.redis_scripts, "execute", execute)
    return sent


def test_a_finished_attempt_acks_its_message_on_its_last_round_trip(user_id, wallet, redis_client, monkeypatch):
    op_id = actors.request_sync(user_id, wallet, [1])
    consumer, message = _delivered()
    try:
        assert message.args == (op_id,) and _in_flight(consumer, message)
        round_trips = _round_trips(monkeypatch)

        _process(message, lambda: lifecycle.sync_portfolio(op_id))

        assert actors.get_sync(op_id)["status"] == "succeeded"
        # One round trip ends the attempt: the operation's end, the lease's release, then the ack.
        assert len(round_trips) == 1 and len(round_trips[0]) == 3
        assert round_trips[0][-1] == actors.worker.broker.scripts["dispatch"].sha
        assert not _in_flight(consumer, message)
        assert redis_client.hexists(f"{actors.worker.broker.namespace}:sync.msgs",
                                    message.options["redis_message_id"]) == 0
        sent = []
        monkeypatch.setattr(actors.worker.broker, "do_ack", lambda *args: sent.append(args), raising=False)
        consumer.ack(message)  # what Dramatiq does next: nothing left to send
        assert sent == [] and message.message_id not in consumer.queued_message_ids
    finally:
        consumer.close()


def test_a_delivery_finding_the_lease_held_acks_with_its_repair(user_id, wallet, redis_client, monkeypatch):
    """Another delivery holds the operation's lease: this one only makes sure the operation ended, and its
    message is acked on that round trip too."""
    op_id = actors.request_sync(user_id, wallet, [1])
    consumer, message = _delivered()
    try:
        redis_client.set(context.leases().key(op_id), "another delivery's token", px=60_000)
        _process(message, lambda: lifecycle.sync_portfolio(op_id))
        assert actors.get_sync(op_id)["status"] == "queued"  # this delivery ran nothing
        assert not _in_flight(consumer, message)
        consumer.ack(message)
        assert message.message_id not in consumer.queued_message_ids
    finally:
        redis_client.delete(context.leases().key(op_id))
        consumer.close()


def test_an_attempt_that_raises_leaves_its_ack_to_dramatiq(user_id, wallet, redis_client, monkeypatch):
    op_id = actors.request_sync(user_id, wallet, [1])
    consumer, message = _delivered()
    try:
        monkeypatch.setattr(lifecycle, "_attempt", lambda row, deadline: lifecycle._failure(
            row, "provider_unavailable", "injected", transient=True))

        with pytest.raises(lifecycle.SyncAttemptFailed):
            _process(message, lambda: lifecycle.sync_portfolio(op_id))

        assert actors.get_sync(op_id)["status"] == "retrying"
        assert _in_flight(consumer, message)  # Retries sends the next attempt, then the consumer acks this one
        consumer.ack(message)
        assert not _in_flight(consumer, message)
    finally:
        consumer.close()


# ------------------------------------------------ a lost end-of-attempt round trip (issue 14, item 1) --

def _lose_the_end_round_trip(monkeypatch, op_id: str) -> None:
    """Run one attempt of ``op_id`` whose last Redis round trip (sent after finish_attempt committed)
    is lost, as on a Redis blip, or a kill -9 between the commit and the send."""
    real_execute = lifecycle.redis_scripts.execute
    lost = []

    def execute(pipeline):
        if not lost:
            lost.append(True)
            raise redis.ConnectionError("Connection reset by peer (injected)")
        return real_execute(pipeline)

    monkeypatch.setattr(lifecycle.redis_scripts, "execute", execute)
    with pytest.raises(redis.ConnectionError):
        lifecycle.sync_portfolio(op_id)
    assert lost == [True]
    monkeypatch.setattr(lifecycle.redis_scripts, "execute", real_execute)


def test_a_redelivery_ends_an_operation_whose_end_was_lost_and_its_events_are_sent_once(
        user_id, wallet, redis_client, monkeypatch):
    op_id = actors.request_sync(user_id, wallet, [1])
    keys = _keys(user_id, wallet, op_id)
    _lose_the_end_round_trip(monkeypatch, op_id)
    assert actors.get_sync(op_id)["status"] == "succeeded"
    assert redis_client.get(keys["inflight"]).decode() == op_id  # the wallet is still held: the bug's state
    assert _events_of(redis_client, op_id) == []

    lifecycle.sync_portfolio(op_id)  # Retries brings the message back: it finds the row final

    assert redis_client.exists(keys["inflight"]) == 0
    assert redis_client.get(keys["recent"]).decode() == op_id
    assert _events_of(redis_client, op_id) == ["sync.succeeded", "portfolio.updated"]
    lifecycle.sync_portfolio(op_id)  # any later delivery: the end is not repeated
    assert _events_of(redis_client, op_id) == ["sync.succeeded", "portfolio.updated"]


def test_force_starts_a_new_operation_when_the_wallet_is_held_by_a_final_one(user_id, wallet, redis_client,
                                                                              monkeypatch, db_conn):
    op_id = actors.request_sync(user_id, wallet, [1])
    keys = _keys(user_id, wallet, op_id)
    _lose_the_end_round_trip(monkeypatch, op_id)
    assert redis_client.get(keys["inflight"]).decode() == op_id

    forced = actors.request_sync(user_id, wallet, [1], force=True)

    assert forced != op_id
    assert db_conn.execute("SELECT status FROM sync_operations WHERE id = %s", (forced,)).fetchone()["status"] \
        == "queued"
    assert redis_client.get(keys["inflight"]).decode() == forced
    # The producer ended the old operation on its way: its events are sent, once.
    assert _events_of(redis_client, op_id) == ["sync.succeeded", "portfolio.updated"]
    lifecycle.sync_portfolio(op_id)
    assert _events_of(redis_client, op_id) == ["sync.succeeded", "portfolio.updated"]
    assert redis_client.get(keys["inflight"]).decode() == forced  # the old one's end never frees the new one


def test_without_force_a_wallet_held_by_a_failed_operation_is_free_again(user_id, wallet, redis_client,
                                                                          monkeypatch, db_conn):
    op_id = actors.request_sync(user_id, wallet, [1])
    keys = _keys(user_id, wallet, op_id)
    db_conn.execute("UPDATE sync_operations SET status = 'failed', finished_at = now(), error_code = 'x' "
                    "WHERE id = %s", (op_id,))  # finished, and its end never sent
    assert redis_client.get(keys["inflight"]).decode() == op_id

    again = actors.request_sync(user_id, wallet, [1])

    assert again != op_id and redis_client.get(keys["inflight"]).decode() == again
    assert redis_client.exists(keys["recent"]) == 0  # a failure starts no cooldown
    assert _events_of(redis_client, op_id) == ["sync.failed"]


def test_a_wallet_held_by_an_operation_not_recorded_is_refused_as_retryable(user_id, wallet, redis_client,
                                                                             db_conn):
    ghost = str(uuid.uuid4())  # another producer admitted it and has not written (or never wrote) its row
    redis_client.set(_keys(user_id, wallet, ghost)["inflight"], ghost, px=60_000)
    rows_before = db_conn.execute("SELECT count(*) AS n FROM sync_operations").fetchone()["n"]

    with pytest.raises(actors.SyncUnavailable):
        actors.request_sync(user_id, wallet, [1], force=True)

    assert db_conn.execute("SELECT count(*) AS n FROM sync_operations").fetchone()["n"] == rows_before
    assert redis_client.get(_keys(user_id, wallet, ghost)["inflight"]).decode() == ghost
