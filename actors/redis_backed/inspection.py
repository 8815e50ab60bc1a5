"""What the queues look like right now, read from Dramatiq's keys in Redis (never written).

The Redis broker keeps, per queue ``q`` under the namespace ``ns``
(see dramatiq/brokers/redis/dispatch.lua):

- ``ns:q``: list of waiting message ids (pushed right, fetched left: the oldest is first);
- ``ns:q.msgs``: hash id -> message, for the waiting *and* the fetched, not yet acked ones;
- ``ns:q.DQ`` / ``ns:q.DQ.msgs``: the same for delayed messages (retries waiting out a backoff);
- ``ns:q.XQ``: zset of dead-lettered ids scored by when (ms); ``ns:q.XQ.msgs`` their bodies;
- ``ns:__heartbeats__``: zset broker id -> last time (ms) it ran a broker command;
- ``ns:__acks__.<broker id>.<queue>``: set of the ids a worker fetched and has not acked.

Every figure here is one pipelined round trip (plus one for the oldest messages' bodies).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable

from dramatiq.common import dq_name

from ..constants import PERIODIC_QUEUE, QUEUES


def heartbeats_key(namespace: str) -> str:
    """``ns:__heartbeats__``: every broker id, scored by when (ms, Redis's clock) it last ran a broker command."""
    return f"{namespace}:__heartbeats__"


def in_flight_key(namespace: str, broker_id: str, queue_name: str) -> str:
    """``ns:__acks__.<broker id>.<queue>``: the ids of ``queue_name`` the worker ``broker_id`` fetched and has
    not acked (its in-flight set)."""
    return f"{namespace}:__acks__.{broker_id}.{queue_name}"


@dataclasses.dataclass(frozen=True)
class QueueState:
    queue: str
    waiting: int  # in the queue's list, not fetched yet
    in_flight: int  # fetched by a worker (prefetched or running), not acked yet
    delayed: int  # on the delay queue (retries in their backoff)
    dead: int  # dead-lettered
    oldest_waiting_age_s: float | None  # age of the message at the head of the queue
    last_dead_at_ms: int | None


@dataclasses.dataclass(frozen=True)
class BrokerProcess:
    broker_id: str
    last_seen_s: float  # seconds since its last broker command
    alive: bool  # within the broker's heartbeat timeout
    in_flight: int  # messages it fetched and has not acked (0 for a producer)


def queue_names(broker) -> list[str]:
    """The broker's queues (delay queues left out): the sync queues by priority, then the others."""
    declared = {q for q in broker.get_declared_queues() if not q.endswith(".DQ")}
    ordered = [name for name, _priority in QUEUES.values()] + [PERIODIC_QUEUE]
    return [q for q in ordered if q in declared] + sorted(declared - set(ordered))


def queue_states(broker, queues: Iterable[str] | None = None) -> list[QueueState]:
    names = list(queues) if queues is not None else queue_names(broker)
    ns = broker.namespace
    pipe = broker.client.pipeline(transaction=False)
    for q in names:
        pipe.llen(f"{ns}:{q}")
        pipe.hlen(f"{ns}:{q}.msgs")
        pipe.hlen(f"{ns}:{dq_name(q)}.msgs")
        pipe.zcard(f"{ns}:{q}.XQ")
        pipe.lindex(f"{ns}:{q}", 0)
        pipe.zrevrange(f"{ns}:{q}.XQ", 0, 0, withscores=True)
    replies = pipe.execute()
    heads = {}
    rows = []
    for i, q in enumerate(names):
        waiting, stored, delayed, dead, head, last_dead = replies[i * 6:(i + 1) * 6]
        if head is not None:
            heads[q] = head.decode() if isinstance(head, bytes) else head
        rows.append([q, waiting, max(0, stored - waiting), delayed, dead, int(last_dead[0][1]) if last_dead else None])
    ages = _head_ages(broker, heads)
    return [QueueState(queue=q, waiting=w, in_flight=f, delayed=d, dead=x, oldest_waiting_age_s=ages.get(q),
                       last_dead_at_ms=last) for q, w, f, d, x, last in rows]


def _head_ages(broker, heads: dict[str, str]) -> dict[str, float]:
    if not heads:
        return {}
    pipe = broker.client.pipeline(transaction=False)
    for q, message_id in heads.items():
        pipe.hget(f"{broker.namespace}:{q}.msgs", message_id)
    now_ms = time.time() * 1000
    ages = {}
    for q, body in zip(heads, pipe.execute()):
        try:
            ages[q] = max(0.0, (now_ms - float(json.loads(body)["message_timestamp"])) / 1000)
        except (TypeError, ValueError, KeyError, RecursionError):
            continue  # a body that is not a message: the consumer will quarantine it
    return ages


def broker_processes(broker, queues: Iterable[str] | None = None) -> list[BrokerProcess]:
    """Every broker id in the heartbeat set, newest first.

    A worker runs a broker command every second or so (its consumers poll), so a live worker is
    always ``alive``; a producer (an API process, the scheduler, this dashboard re-driving) is
    listed too for the heartbeat timeout after it enqueued something.  ``in_flight`` > 0 marks a
    worker for sure.
    """
    names = list(queues) if queues is not None else queue_names(broker)
    ns = broker.namespace
    entries = broker.client.zrevrange(heartbeats_key(ns), 0, 999, withscores=True)
    if not entries:
        return []
    ids = [e[0].decode() if isinstance(e[0], bytes) else e[0] for e in entries]
    pipe = broker.client.pipeline(transaction=False)
    for broker_id in ids:
        for q in names:
            pipe.scard(in_flight_key(ns, broker_id, q))
            pipe.scard(in_flight_key(ns, broker_id, dq_name(q)))
    counts = pipe.execute()
    per = 2 * len(names)
    now_ms = broker.clock.now_ms()  # heartbeats are Redis times (SyncBroker._dispatch)
    timeout_ms = broker.heartbeat_timeout
    return [BrokerProcess(broker_id=broker_id, last_seen_s=max(0.0, (now_ms - score) / 1000),
                          alive=now_ms - score < timeout_ms, in_flight=sum(counts[i * per:(i + 1) * per]))
            for i, (broker_id, (_raw, score)) in enumerate(zip(ids, entries))]


def quarantined(broker) -> int:
    """Messages in the quarantine list (undecodable bodies the consumers set aside); 0 if none."""
    return int(broker.client.llen(f"{broker.namespace}:quarantine"))
