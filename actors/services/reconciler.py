"""The reconciler: ``sync_operations`` is the ground truth, so nothing accepted is silently lost.

Redis can lose a message in ways Dramatiq does not recover by itself: a failure
inside the Retries middleware while it re-enqueues (dramatiq PR 545), a worker
killed while it ran a job (its message comes back only once the broker notices
the dead worker), an operation whose enqueue failed after its row was written.
Every few seconds one worker of the cluster (a Redis lock decides which) looks
at the operations that are not final and asks Redis about each:

- ``running`` with no live lease: its worker died mid-attempt;
- ``queued`` or ``retrying`` whose message is in none of its queue's message
  tables (waiting, delayed or in flight), or has sat in a live worker's
  in-flight set, unrun, for longer than an attempt can take (its processing
  failed while Redis was away, and Dramatiq only recovers dead workers' sets).

Such an operation is sent again (its row goes back to ``queued``, with
``requeues + 1``), or failed with a clear ``error_code`` once it is hopeless:
``worker_lost`` when it has used all its attempts, ``expired`` when it is older
than ``SYNC_MAX_AGE_MS``.  Then the pass puts the messages dead workers held back
at the head of their queues (Dramatiq does so only in a maintenance pass drawn by
chance, per queue: ``SyncBroker.recover_dead_workers``).  A message that turns up
late after all is harmless: a finished operation ignores it, and a running
one's lease turns it away.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
import uuid

import redis

from storage import operations

from ..constants import QUEUES
from ..redis_backed.inspection import heartbeats_key, in_flight_key
from . import context, lifecycle
from . import observe  # metrics and completion events
from .intake import sync_message

logger = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
#: Rows looked at per pass; a cursor walks on through larger sets pass after pass.
BATCH = 1000


def message_key(namespace: str, operation_id: str) -> str:
    """Where the Redis id of an operation's latest retry message is kept
    (see ``actors.middleware.track_retries``)."""
    return f"{namespace}:opmsg:{operation_id}"


def reconcile(broker=None, *, dead_workers: bool = False) -> collections.Counter:
    """One pass over the operations that are not final, with ``broker`` (default: this process's);
    returns what it did, by action.

    With ``dead_workers``, the pass then puts the messages dead workers held back at the head of their
    queues (``recovered``): after the operations' decisions, so that a dead worker's running operation is
    sent again or failed before its message can run.  Only a caller that has reached Redis for a whole
    heartbeat timeout may ask: after an outage every worker's heartbeat is old, the live ones' too."""
    broker = broker or context.broker()
    done: collections.Counter = collections.Counter()
    _operations_pass(broker, done)
    if dead_workers:
        try:
            recovered = broker.recover_dead_workers()
        except redis.RedisError as exc:  # the operations' pass is done; the next one tries again
            logger.warning("Reconciler: could not recover the messages of dead workers: %s",
                           context.cfg().redact(str(exc)))
        else:
            if recovered:
                done["recovered"] = recovered
                logger.warning("Reconciler: %d message(s) held by dead workers are back at the head of their "
                               "queues.", recovered)
    observe.reconciled(done)
    return done


def _operations_pass(broker, done: collections.Counter) -> None:
    """The operations that are not final, looked at and sent again or failed; counted in ``done``."""
    cfg = context.cfg()
    client = broker.client
    cursor_key = f"{cfg.sync.namespace}:reconciler:cursor"
    raw_cursor = client.get(cursor_key)
    after = dt.datetime.fromisoformat(raw_cursor.decode()) if raw_cursor else _EPOCH
    grace_ms = max(10_000, 2 * cfg.sync.lease_ms)
    # A running operation is a candidate a moment after it started: its lease, checked below,
    # is what says whether its worker is alive.
    rows = operations.reconcile_candidates(after=after, grace_ms=grace_ms, lease_ms=2000,
                                           max_age_ms=cfg.sync.max_age_ms, limit=BATCH)
    client.set(cursor_key, (rows[-1]["enqueued_at"] if len(rows) == BATCH else _EPOCH).isoformat())

    suspects_key = f"{cfg.sync.namespace}:reconciler:stranded"
    # Even a pass with nothing to look at prunes the messages that were run since the last one.
    in_flight = _in_flight(broker) if rows or client.exists(suspects_key) else set()
    suspects = _Suspects(client, suspects_key, in_flight, now=time.time())
    if not rows:
        return
    leased = context.leases().live([r["id"] for r in rows])
    # A running operation's message is in its worker's in-flight set whether the worker lives or
    # not: for it, the lease alone tells.  For the others, where is the message?
    states = _message_states(broker, [r for r in rows if r["id"] not in leased and r["status"] != "running"],
                             in_flight)
    for row in rows:
        state, redis_id = states.get(row["id"], (None, None))
        if row["id"] in leased or state == "waiting":
            continue
        if state == "in_flight":
            # Held by a live worker without being run.  Normal for a moment (a prefetched message
            # waits for a free thread), but a message whose processing failed while Redis was
            # away stays in its worker's in-flight set for good, and Dramatiq only recovers those
            # of dead workers.  Past a full attempt's time, it is sent again.  The time counts from
            # when this message was first seen there: a retry's message is a new one.
            if suspects.seen_for(redis_id) < cfg.sync.time_limit_ms / 1000 + 30:
                continue
            suspects.forget(redis_id)
        if row["too_old"]:
            _fail(row, "expired", "its message was lost and it is older than SYNC_MAX_AGE_MS", done)
        elif row["status"] != "queued" and row["attempts"] >= cfg.sync.max_attempts:
            _fail(row, "worker_lost", f"its last attempt ({row['attempts']} of {cfg.sync.max_attempts}) "
                                      "was lost with its worker or message", done)
        else:
            _requeue(broker, row, done)


class _Suspects:
    """When each message held unrun in a live worker's in-flight set was first seen there, by the
    message's Redis id, in one Redis hash.  An entry goes as soon as its message leaves every in-flight
    set (run and acked, or recovered), so the hash never holds more than the workers' prefetch."""

    def __init__(self, client, key: str, in_flight: set[str], *, now: float):
        self.client, self.key, self.now = client, key, now
        self.first_seen = {k.decode(): float(v) for k, v in client.hgetall(key).items()}
        gone = [m for m in self.first_seen if m not in in_flight]
        if gone:
            client.hdel(key, *gone)
            for m in gone:
                del self.first_seen[m]

    def seen_for(self, redis_id: str) -> float:
        """Seconds since the message ``redis_id`` was first seen held unrun (0 the first time)."""
        if redis_id not in self.first_seen:
            if not self.client.hsetnx(self.key, redis_id, self.now):  # another pass just wrote it
                self.first_seen[redis_id] = float(self.client.hget(self.key, redis_id) or self.now)
            else:
                self.first_seen[redis_id] = self.now
                self.client.expire(self.key, 3600)  # a safety net: the entries are pruned every pass
        return self.now - self.first_seen[redis_id]

    def forget(self, redis_id: str) -> None:
        self.client.hdel(self.key, redis_id)
        self.first_seen.pop(redis_id, None)


def _in_flight(broker) -> set[str]:
    """The Redis id of every message a live worker holds (prefetched or running): the in-flight sets
    are small (a prefetch each)."""
    client, namespace = broker.client, broker.namespace
    # Heartbeats are on Redis's clock (SyncBroker._dispatch), so "recent" is judged on it too.
    live = client.zrangebyscore(heartbeats_key(namespace), broker.clock.now_ms() - broker.heartbeat_timeout,
                                "+inf")
    queues = [q for queue, _ in QUEUES.values() for q in (queue, f"{queue}.DQ")]
    pipe = client.pipeline(transaction=False)
    for worker in live:
        for queue in queues:
            pipe.smembers(in_flight_key(namespace, worker.decode(), queue))
    return {m.decode() for members in pipe.execute() for m in members}


def _message_states(broker, rows: list[dict], in_flight: set[str]) -> dict[str, tuple[str, str]]:
    """Where each row's message is, with its Redis id: ``waiting`` (in its queue or delay queue),
    ``in_flight`` (only in a live worker's in-flight set, ``in_flight``) or, when absent from both, no
    entry: lost."""
    if not rows:
        return {}
    client, namespace = broker.client, broker.namespace
    retry_ids = client.mget([message_key(namespace, r["id"]) for r in rows])
    pipe = client.pipeline(transaction=False)
    checks = []
    for row, retry_id in zip(rows, retry_ids):
        queue = QUEUES[row["priority"]][0]
        for redis_id in filter(None, [row["message_id"], retry_id.decode() if retry_id else None]):
            for table in (f"{namespace}:{queue}.msgs", f"{namespace}:{queue}.DQ.msgs"):
                pipe.hexists(table, redis_id)
                checks.append((row["id"], redis_id))
    states: dict[str, tuple[str, str]] = {}
    for (op_id, redis_id), exists in zip(checks, pipe.execute()):
        if exists:
            state = "in_flight" if redis_id in in_flight else "waiting"
            if states.get(op_id, ("",))[0] != "waiting":
                states[op_id] = (state, redis_id)
    return states


def _requeue(broker, row: dict, done: collections.Counter) -> None:
    message = sync_message(row["priority"], row["id"])
    if operations.requeue_operation(row, message_id=message.options["redis_message_id"]):
        broker.enqueue_batch([message])
        done["requeued"] += 1
        logger.warning("Reconciler: operation %s was %s with its %s lost; sent it again.", row["id"], row["status"],
                       "worker" if row["status"] == "running" else "message")


def _fail(row: dict, code: str, reason: str, done: collections.Counter) -> None:
    if operations.fail_stuck_operation(row, error_code=code, error_message=reason):
        lifecycle.end_failed(row["id"])
        done[f"failed_{code}"] += 1
        logger.warning("Reconciler: operation %s failed as %s: %s.", row["id"], code, reason)


def reconcile_exclusively(token: str | None = None, broker=None, *,
                          dead_workers: bool = False) -> collections.Counter | None:
    """:func:`reconcile`, unless another process holds the reconciler's lock for this interval
    (``None`` then).  The workers' reconciler threads and the housekeeping job both go through it,
    so two passes never run at once."""
    broker = broker or context.broker()
    interval_ms = context.cfg().reconciler.interval_s * 1000
    if not broker.client.set(f"{broker.namespace}:reconciler:lock", token or uuid.uuid4().hex, nx=True,
                             px=interval_ms):
        return None
    return reconcile(broker, dead_workers=dead_workers)
