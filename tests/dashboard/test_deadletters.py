"""Dead letters and live queue state, on the run's Redis namespace: listing, counting, re-driving."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
from dramatiq.message import Message

import actors
import actors.worker
from actors.redis_backed import inspection
from actors.services import deadletters
from actors.services.deadletters import DeadLetterFilter


pytestmark = pytest.mark.integration


def dead_letter(broker, queue: str, redis_id: str, *, at: dt.datetime) -> None:
    """Move a waiting message to the dead-letter queue, as dispatch.lua's ``nack`` does (at ``at``)."""
    ns = broker.namespace
    client = broker.client
    body = client.hget(f"{ns}:{queue}.msgs", redis_id)
    assert body is not None
    client.lrem(f"{ns}:{queue}", 0, redis_id)
    client.zadd(f"{ns}:{queue}.XQ", {redis_id: int(at.timestamp() * 1000)})
    client.hset(f"{ns}:{queue}.XQ.msgs", redis_id, body)
    client.hdel(f"{ns}:{queue}.msgs", redis_id)


def failed_sync(broker, user: str, *, at: dt.datetime | None = None, code: str = "provider_rejected") -> str:
    """A sync that failed for good and whose message was dead-lettered (at ``at``, default now): what the
    worker leaves behind.  (Not much earlier than now: the broker's maintenance drops dead letters
    older than a week.)"""
    wallet = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    op_id = actors.request_sync(user, wallet, [1, 8453], priority="high")
    row = actors.get_sync(op_id)
    from actors.services import lifecycle

    lifecycle.fail_unrun(op_id, code, f"chain 1: simulated {code}")
    dead_letter(broker, "sync_high", row["message_id"], at=at or dt.datetime.now(dt.timezone.utc))
    return op_id


def NOW() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def broker(database, redis_client):
    return actors.worker.broker


def test_list_count_and_redrive_a_failed_sync_as_a_new_operation(broker, user_id):
    op_id = failed_sync(broker, user_id)
    flt = DeadLetterFilter(user_id=user_id)
    letters, total = deadletters.list_dead_letters(flt)
    assert total == 1 and deadletters.count_dead_letters(flt) == 1
    letter = letters[0]
    assert letter.operation_id == op_id and letter.actor_name == "sync_portfolio_high"
    assert letter.operation["status"] == "failed" and letter.summary()["error_code"] == "provider_rejected"
    assert abs((letter.dead_at - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 60
    assert deadletters.count_dead_letters(DeadLetterFilter(user_id=user_id, error_code="expired")) == 0
    assert deadletters.count_dead_letters(DeadLetterFilter(user_id=user_id, text="REJECTED")) == 1
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    assert deadletters.count_dead_letters(DeadLetterFilter(user_id=user_id, since=later)) == 0
    assert deadletters.count_dead_letters(DeadLetterFilter(user_id=user_id, until=later)) == 1

    report = deadletters.redrive([(letter.queue, letter.redis_id)])
    assert len(report.redriven) == 1 and not report.skipped
    new_id = report.redriven[0]["operation_id"]
    assert new_id != op_id and report.redriven[0]["how"] == "new operation"
    new = actors.get_sync(new_id)
    assert (new["trigger"], new["status"], new["priority"]) == ("redrive", "queued", "high")
    assert (new["user_id"], new["wallet_address"], list(new["chain_ids"])) == (
        user_id, letter.operation["wallet_address"], [1, 8453])
    assert broker.client.hexists(f"{broker.namespace}:sync_high.msgs", new["message_id"])
    assert deadletters.count_dead_letters(flt) == 0
    # a second re-drive of the same dead letter finds nothing to do
    again = deadletters.redrive([(letter.queue, letter.redis_id)])
    assert not again.redriven and "not in the dead-letter queue" in again.skipped[0]["reason"]


def test_redrive_matching_does_what_the_dry_run_counted(broker, user_id):
    for _ in range(3):
        failed_sync(broker, user_id)
    flt = DeadLetterFilter(user_id=user_id)
    assert deadletters.count_dead_letters(flt) == 3
    report = deadletters.redrive_matching(flt, limit=2)
    assert len(report.redriven) == 2
    assert deadletters.count_dead_letters(flt) == 1
    assert len(deadletters.redrive_matching(flt).redriven) == 1


def test_a_sync_whose_operation_is_unknown_is_put_back(broker, user_id):
    message = broker.get_actor("sync_portfolio").message(str(uuid.uuid4()))
    sent = broker.enqueue(message)
    dead_letter(broker, "sync", sent.options["redis_message_id"], at=NOW())
    report = deadletters.redrive([("sync", sent.options["redis_message_id"])])
    assert not report.redriven and "unknown" in report.skipped[0]["reason"]
    assert broker.client.zscore(f"{broker.namespace}:sync.XQ", sent.options["redis_message_id"]) is not None
    broker.client.zrem(f"{broker.namespace}:sync.XQ", sent.options["redis_message_id"])
    broker.client.hdel(f"{broker.namespace}:sync.XQ.msgs", sent.options["redis_message_id"])


def test_a_sync_not_final_is_sent_again_and_another_actor_re_enqueued(broker, user_id):
    wallet = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    op_id = actors.request_sync(user_id, wallet, [1])
    row = actors.get_sync(op_id)
    dead_letter(broker, "sync", row["message_id"], at=NOW())
    report = deadletters.redrive([("sync", row["message_id"])])
    assert report.redriven[0]["how"] == "operation sent again"
    after = actors.get_sync(op_id)
    assert after["status"] == "queued" and after["message_id"] != row["message_id"]
    assert broker.client.hexists(f"{broker.namespace}:sync.msgs", after["message_id"])

    queue = f"dashtest_{uuid.uuid4().hex[:8]}"
    broker.declare_queue(queue)
    # A dead letter is older than its re-drive: a minute, so the two never fall in one millisecond.
    old = broker.enqueue(Message(queue_name=queue, actor_name="some_periodic_task", args=(1,), kwargs={},
                                 options={"retries": 3, "traceback": "boom"},
                                 message_timestamp=int(time.time() * 1000) - 60_000))
    dead_letter(broker, queue, old.options["redis_message_id"], at=NOW())
    report = deadletters.redrive([(queue, old.options["redis_message_id"])])
    assert report.redriven[0]["how"] == "message re-enqueued"
    waiting = broker.client.lrange(f"{broker.namespace}:{queue}", 0, -1)
    assert len(waiting) == 1
    body = json.loads(broker.client.hget(f"{broker.namespace}:{queue}.msgs", waiting[0]))
    assert body["actor_name"] == "some_periodic_task" and body["args"] == [1]
    assert "retries" not in body["options"] and body["options"]["redriven_from"] == old.message_id
    assert body["message_timestamp"] > old.message_timestamp
    broker.flush(queue)


def test_queue_state_from_redis(broker):
    queue = f"dashtest_{uuid.uuid4().hex[:8]}"
    broker.declare_queue(queue)
    try:
        for i in range(3):
            broker.enqueue(Message(queue_name=queue, actor_name="noop", args=(i,), kwargs={}, options={}))
        broker.enqueue(Message(queue_name=queue, actor_name="noop", args=(9,), kwargs={}, options={}), delay=60_000)
        fetched = broker.do_fetch(queue, 1)  # a worker took one: it is in flight now
        assert len(fetched) == 1
        waiting_ids = broker.client.lrange(f"{broker.namespace}:{queue}", 0, -1)
        dead_letter(broker, queue, waiting_ids[-1].decode(), at=NOW())
        state, = inspection.queue_states(broker, [queue])
        assert (state.waiting, state.in_flight, state.delayed, state.dead) == (1, 1, 1, 1)
        assert 0 <= state.oldest_waiting_age_s < 60
        assert abs(state.last_dead_at_ms / 1000 - dt.datetime.now(dt.timezone.utc).timestamp()) < 60
        me = [p for p in inspection.broker_processes(broker, [queue]) if p.broker_id == broker.broker_id]
        assert me and me[0].alive and me[0].in_flight == 1
        assert queue in inspection.queue_names(broker)
        assert inspection.queue_names(broker)[:3] == ["sync_high", "sync", "sync_low"]
    finally:
        for suffix in ("", ".msgs", ".DQ", ".DQ.msgs", ".XQ", ".XQ.msgs"):
            broker.client.delete(f"{broker.namespace}:{queue}{suffix}")
        broker.client.delete(f"{broker.namespace}:__acks__.{broker.broker_id}.{queue}")


def test_quarantine_count(broker):
    key = f"{broker.namespace}:quarantine"
    before = inspection.quarantined(broker)
    broker.client.lpush(key, b"{not a message")
    try:
        assert inspection.quarantined(broker) == before + 1
    finally:
        broker.client.lrem(key, 1, b"{not a message")
