"""The reconciler: ``sync_operations`` is the ground truth, so nothing accepted is silently lost.

Redis can lose a message in ways Dramatiq does not recover by itself: a failure
inside the Retries middleware while it re-enqueues (dramatiq PR 545), a worker
killed while it ran a job (its message comes back only once the broker notices
the dead worker), an operation whose enqueue failed after its row was written.
Every few seconds one worker of the cluster (a Redis lock decides which) looks
at the operations that are not final and asks Redis about each:

- ``running`` with no live lease: its worker died mid-attempt;
- ``queued`` or ``retrying`` whose message is in none of its queue's message
  tables (waiting, delayed or in flight).

Such an operation is sent again (its row goes back to ``queued``, with
``requeues + 1``), or failed with a clear ``error_code`` once it is hopeless:
``worker_lost`` when it has used all its attempts, ``expired`` when it is older
than ``SYNC_MAX_AGE_MS``.  A message that turns up late after all is harmless:
a finished operation ignores it, and a running one's lease turns it away.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import uuid

import dramatiq
import psycopg
import redis
from dramatiq.middleware import Middleware

from storage import operations

from . import context

logger = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
#: Rows looked at per pass; a cursor walks on through larger sets pass after pass.
BATCH = 1000


def message_key(namespace: str, operation_id: str) -> str:
    """Where the Redis id of an operation's latest retry message is kept (see :class:`TrackRetries`)."""
    return f"{namespace}:opmsg:{operation_id}"


def reconcile() -> collections.Counter:
    """One pass over the operations that are not final; returns what it did, by action."""
    cfg = context.cfg()
    broker = dramatiq.get_broker()
    client = broker.client
    cursor_key = f"{cfg.namespace}:reconciler:cursor"
    raw_cursor = client.get(cursor_key)
    after = dt.datetime.fromisoformat(raw_cursor.decode()) if raw_cursor else _EPOCH
    grace_ms = max(10_000, 2 * cfg.lease_ms)
    # A running operation is a candidate a moment after it started: its lease, checked below,
    # is what says whether its worker is alive.
    rows = operations.reconcile_candidates(after=after, grace_ms=grace_ms, lease_ms=2000,
                                           max_age_ms=cfg.max_age_ms, limit=BATCH)
    client.set(cursor_key, (rows[-1]["enqueued_at"] if len(rows) == BATCH else _EPOCH).isoformat())

    done: collections.Counter = collections.Counter()
    if not rows:
        return done
    leased = context.leases().live([r["id"] for r in rows])
    # A running operation's message is in its worker's in-flight set whether the worker lives or
    # not: for it, the lease alone tells.  For the others, the message must still be in Redis.
    present = _messages_present(client, cfg.namespace,
                                [r for r in rows if r["id"] not in leased and r["status"] != "running"])
    for row in rows:
        if row["id"] in leased or row["id"] in present:
            continue
        if row["too_old"]:
            _fail(row, "expired", "its message was lost and it is older than SYNC_MAX_AGE_MS", done)
        elif row["status"] != "queued" and row["attempts"] >= cfg.max_attempts:
            _fail(row, "worker_lost", f"its last attempt ({row['attempts']} of {cfg.max_attempts}) "
                                      "was lost with its worker or message", done)
        else:
            _requeue(broker, row, done)
    return done


def _messages_present(client: redis.Redis, namespace: str, rows: list[dict]) -> set[str]:
    """The ids of ``rows`` whose message still exists in Redis: waiting, delayed or in flight."""
    from .broker import QUEUES

    if not rows:
        return set()
    retry_ids = client.mget([message_key(namespace, r["id"]) for r in rows])
    pipe = client.pipeline(transaction=False)
    checks = []
    for row, retry_id in zip(rows, retry_ids):
        queue = QUEUES[row["priority"]][0]
        for redis_id in filter(None, [row["message_id"], retry_id.decode() if retry_id else None]):
            for table in (f"{namespace}:{queue}.msgs", f"{namespace}:{queue}.DQ.msgs"):
                pipe.hexists(table, redis_id)
                checks.append(row["id"])
    return {op_id for op_id, exists in zip(checks, pipe.execute()) if exists}


def _requeue(broker, row: dict, done: collections.Counter) -> None:
    from .intake import actor_name

    message = broker.prepare(broker.get_actor(actor_name(row["priority"])).message(row["id"]))
    if operations.requeue_operation(row, message_id=message.options["redis_message_id"]):
        broker.enqueue_batch([message])
        done["requeued"] += 1
        logger.warning("Reconciler: operation %s was %s with its %s lost; sent it again.", row["id"], row["status"],
                       "worker" if row["status"] == "running" else "message")


def _fail(row: dict, code: str, reason: str, done: collections.Counter) -> None:
    if operations.fail_stuck_operation(row, error_code=code, error_message=reason):
        context.admissions().release(row["user_id"], row["wallet_address"], row["id"], succeeded=False)
        done[f"failed_{code}"] += 1
        logger.warning("Reconciler: operation %s failed as %s: %s.", row["id"], code, reason)


class TrackRetries(Middleware):
    """Remember the Redis id of each retry message of a sync operation (the audit row knows only
    the first message's), so the reconciler can tell a waiting retry from a lost one."""

    def after_enqueue(self, broker, message, delay):
        # Retries and their moves from the delay queue carry a retry count; first sends do not.
        if message.options.get("retries") and message.actor_name.startswith("sync_portfolio") and message.args:
            ttl_ms = (delay or 0) + context.cfg().max_age_ms
            broker.client.set(message_key(broker.namespace, str(message.args[0])),
                              message.options["redis_message_id"], px=ttl_ms)


class ReconcilerMiddleware(Middleware):
    """Runs :func:`reconcile` every ``RECONCILE_INTERVAL_S`` in a thread of each worker process;
    a Redis lock lets only one of them do it per interval."""

    def __init__(self):
        self._stop = threading.Event()

    def after_worker_boot(self, broker, worker):
        self._stop.clear()
        threading.Thread(target=self._loop, args=(broker,), name="reconciler", daemon=True).start()

    def before_worker_shutdown(self, broker, worker):
        self._stop.set()

    def _loop(self, broker) -> None:
        interval = context.cfg().reconcile_interval_s
        token = uuid.uuid4().hex
        while not self._stop.wait(interval):
            try:
                if broker.client.set(f"{broker.namespace}:reconciler:lock", token, nx=True, px=interval * 1000):
                    reconcile()
            except (redis.RedisError, psycopg.Error) as exc:
                logger.warning("Reconciler pass skipped: %s", context.cfg().redact(str(exc)))
            except Exception:
                logger.exception("Reconciler pass failed.")
