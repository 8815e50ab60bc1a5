"""Redis and PostgreSQL taken away for real, under real ``dramatiq`` workers and a real producer process.

Each test runs servers of its own (``tests.servers``: a Redis with AOF, a PostgreSQL cluster) on
spare loopback ports, so it can kill, freeze or stop them.  ``actors`` in this process is bound to the
run's main servers (settings are read at import), so the producer side runs in a process of its own
(``tests.producer``) with the spare server's URL in its environment, and stays the same process
across the outage: it has to reconnect by itself.  The outages last ``OUTAGE_S`` (20 s); jobs take
``SIMULATED_LATENCY_MS`` (200 ms) per chain, so some are in flight when a server goes away.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import psycopg
import pytest
import redis
from psycopg.rows import dict_row

from storage import migrate
from storage.pool import RECONNECT_TIMEOUT_S
from tests.processes import WorkerProcess
from tests.producer import ProducerProcess
from harness.servers import PostgresServer, RedisServer
from tests.waiting import FINAL, wait_until

pytestmark = pytest.mark.acceptance

OUTAGE_S = 20
REDIS_TIMEOUT_S = 2
DB_CONNECT_TIMEOUT_S = 2
#: Short timeouts, quick retries and reconciler passes, so recovery fits in the test's time.
FAST = {
    "REDIS_TIMEOUT_S": str(REDIS_TIMEOUT_S), "DB_CONNECT_TIMEOUT_S": str(DB_CONNECT_TIMEOUT_S),
    "SYNC_RETRY_MIN_BACKOFF_MS": "200", "SYNC_RETRY_MAX_BACKOFF_MS": "3000", "RECONCILE_INTERVAL_S": "1",
    "SIMULATED_LATENCY_MS": "200", "SYNC_LEASE_MS": "3000",
}
CHAINS = [1, 8453]
#: How much longer than its timeout a refused call may take (scheduling, logging, the JSON round trip).
SLACK_S = 1.5


# ---------------------------------------------------------------------------------------- helpers --


def accepted_ids(outcomes: list[dict]) -> list[str]:
    """The operation ids of ``outcomes``, all of which must have been accepted."""
    refused = [o for o in outcomes if o["operation_id"] is None]
    assert not refused, f"requests refused while the servers were up: {refused[:3]}"
    return [o["operation_id"] for o in outcomes]


def audit_rows(conn: psycopg.Connection, ids: list[str]) -> dict[str, dict]:
    """The audit rows of ``ids``, each with ``stored``: the holdings stored for its wallet's chains."""
    rows = conn.execute(
        """SELECT o.id::text, o.status, o.attempts, o.requeues, o.error_code, o.holdings_count, o.enqueued_at,
                  o.wallet_address,
                  (SELECT count(*) FROM holdings h WHERE h.user_id = o.user_id
                     AND h.wallet_address = o.wallet_address AND h.chain_id = ANY(o.chain_ids)) AS stored
           FROM sync_operations o WHERE o.id = ANY(%s::uuid[])""", (ids,)).fetchall()
    return {r["id"]: r for r in rows}


def wait_final(conn: psycopg.Connection, ids: list[str], timeout: float) -> dict[str, dict]:
    """The audit rows of ``ids`` once all are final, or as they are after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        rows = audit_rows(conn, ids)
        if (len(rows) == len(set(ids)) and all(r["status"] in FINAL for r in rows.values())) \
                or time.monotonic() > deadline:
            return rows
        time.sleep(0.25)


def not_succeeded(rows: dict[str, dict], ids: list[str]) -> list:
    return [(i, rows[i]["status"], rows[i]["error_code"]) if i in rows else (i, "missing") for i in ids
            if i not in rows or rows[i]["status"] != "succeeded"]


def inconsistent(rows: dict[str, dict]) -> list:
    return [(i, r["holdings_count"], r["stored"]) for i, r in rows.items() if r["holdings_count"] != r["stored"]]


def freeze(server: RedisServer) -> None:
    """SIGSTOP: the server keeps its sockets but answers nothing (a partition, not a refusal)."""
    os.kill(server.proc.pid, signal.SIGSTOP)


def thaw(server: RedisServer) -> None:
    if server.proc and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)


def inflight_key(namespace: str, user_id: str, wallet: str) -> str:
    return f"{namespace}:sync:inflight:{user_id}:{wallet}"


# --------------------------------------------------------------------------------------- fixtures --

@pytest.fixture
def spare_redis(tmp_path):
    """A Redis of the test's own (AOF on), listed before ``start_worker`` so it outlives the workers."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    thaw(server)
    server.stop()


@pytest.fixture
def spare_postgres(tmp_path):
    """A PostgreSQL cluster of the test's own with the schema applied; yields ``(server, url)``."""
    server = PostgresServer(tmp_path / "pg")
    try:
        server.init()
        with psycopg.connect(server.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE DATABASE portfolio_sync")
        url = server.url("portfolio_sync")
        migrate.apply_schema(url, connect_timeout=5)
        yield server, url
    finally:
        server.cleanup()


@pytest.fixture
def start_producer(tmp_path):
    """Start ``python -m tests.producer serve`` with the run's environment plus ``env``; closed after the test."""
    started: list[ProducerProcess] = []

    def start(env: dict[str, str]) -> ProducerProcess:
        producer = ProducerProcess(env=env, log_path=tmp_path / f"producer-{len(started)}.log")
        started.append(producer)
        return producer

    yield start
    for producer in started:
        producer.close()


# ------------------------------------------------------------------------- 3. Redis restart (AOF) --

def test_redis_killed_and_restarted_on_its_aof_loses_no_accepted_request(
        spare_redis, start_worker, start_producer, db_conn, user_id, capsys):
    """Guarantee: Redis killed with SIGKILL while jobs run and wait, then restarted on the same AOF
    directory, loses no accepted request: every operation accepted before the kill ends `succeeded`
    with its holdings stored (AOF on: a key Redis acknowledged before the kill is there after it).  The
    same worker processes and the same producer process reconnect by themselves (no restart, no silent
    hang): requests made after the restart are accepted at once and complete.

    The messages a consumer had fetched and not handed out when Redis died stay in the live worker's
    in-flight set: the consumer that replaces it puts them back in the queue.  (The reconciler would
    resend them only after the time limit and 30 s, 90 s here, past the wait below.)"""
    env = {**FAST, "REDIS_URL": spare_redis.url}
    worker = start_worker(threads=4, env=env)
    worker_pids = worker.children()
    producer = start_producer(env)
    namespace = os.environ["SYNC_NAMESPACE"]

    ids = accepted_ids(producer.request(user_id, 40, chains=CHAINS))
    wait_until(lambda: any(r["status"] == "running" for r in audit_rows(db_conn, ids).values()), 15,
               "no job started")
    marker = f"{namespace}:outage-test:{uuid.uuid4().hex}"
    redis.Redis.from_url(spare_redis.url).set(marker, "acknowledged before the kill")

    spare_redis.kill()
    unstarted = [i for i, r in audit_rows(db_conn, ids).items() if r["status"] == "queued"]
    time.sleep(3)  # longer than redis-py's own reconnect attempts: the workers see the outage
    spare_redis.start()
    assert redis.Redis.from_url(spare_redis.url).get(marker) == b"acknowledged before the kill"  # AOF replayed

    after = accepted_ids(producer.request(user_id, 5, first=1000, chains=CHAINS, timeout=30))
    rows = wait_final(db_conn, ids + after, timeout=60)

    assert not_succeeded(rows, ids) == [], "operations accepted before the kill did not all succeed"
    assert not_succeeded(rows, after) == [], "operations requested after the restart did not all succeed"
    assert inconsistent(rows) == []
    assert worker.alive() and worker.children() == worker_pids  # the same processes carried on
    with capsys.disabled():
        print(f"\nRedis restart: {len(unstarted)} of {len(ids)} operations waiting at the kill; "
              f"{sum(r['requeues'] > 0 for r in rows.values())} needed the reconciler")


# -------------------------------------------------------------- 4. Redis unreachable for 20 s --

@pytest.fixture(scope="class")
def redis_outage(database, tmp_path_factory):
    """One Redis outage of ``OUTAGE_S`` under a running worker and producer, recorded for the tests below.

    The server is frozen (SIGSTOP), not killed: connections stay open and nothing answers, so
    only timeouts can save a caller from hanging.  Timeline: 40 syncs accepted, some running;
    freeze; the producer keeps asking (new wallets) while the server is away; thaw; the producer
    asks for new wallets and again for those refused; then everything is given time to finish.
    """
    tmp = tmp_path_factory.mktemp("redis-outage")
    server = RedisServer(tmp / "redis").start()
    env = {**FAST, "REDIS_URL": server.url}
    user = f"user-{uuid.uuid4().hex[:12]}"
    worker = producer = None
    conn = psycopg.connect(database, autocommit=True, row_factory=dict_row)
    try:
        worker = WorkerProcess(tmp / "worker.log", threads=4, env=env).wait_ready()
        worker_pids = worker.children()
        producer = ProducerProcess(env=env, log_path=tmp / "producer.log")

        before = accepted_ids(producer.request(user, 40, chains=CHAINS))
        wait_until(lambda: any(r["status"] == "running" for r in audit_rows(conn, before).values()), 15,
                   "no job started")
        freeze(server)
        frozen_at = time.monotonic()
        at_freeze = {i: r["status"] for i, r in audit_rows(conn, before).items()}

        during: list[dict] = []
        while time.monotonic() - frozen_at < OUTAGE_S - 2 * REDIS_TIMEOUT_S - SLACK_S:
            during += producer.request(user, 1, first=100 + len(during), chains=CHAINS,
                                       timeout=5 * REDIS_TIMEOUT_S)
        refused_wallets = {o["wallet"] for o in during if o["operation_id"] is None}
        written_during = conn.execute(
            "SELECT count(*) AS n FROM sync_operations WHERE user_id = %s AND wallet_address = ANY(%s)",
            (user, sorted(refused_wallets))).fetchone()["n"]
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - frozen_at)))
        thaw(server)
        thawed_at = time.monotonic()

        after_new = producer.request(user, 5, first=1000, chains=CHAINS, timeout=30)
        after_retry = producer.request(user, len(during), first=100, chains=CHAINS, timeout=30)
        after = [o["operation_id"] for o in after_new + after_retry + during if o["operation_id"]]
        wait_final(conn, after, timeout=30)
        # Those accepted before: the reconciler re-sends a lost message max(10 s, 2 x SYNC_LEASE_MS) after
        # the operation's start, which the outage has outlasted; 15 s after the thaw is plenty for that.
        remaining = 15 - (time.monotonic() - thawed_at)
        rows = wait_final(conn, before + after, timeout=max(0.0, remaining))
        yield {
            "before": before, "at_freeze": at_freeze, "during": during, "refused_wallets": refused_wallets,
            "written_during": written_during, "after_new": after_new, "after_retry": after_retry,
            "rows": rows, "worker": worker, "worker_pids": worker_pids,
        }
    finally:
        if producer:
            producer.close()
        thaw(server)
        if worker:
            worker.stop()
        server.stop()
        # As clean_queues does: end what the scenario left unfinished, so no later test's reconciler sees it.
        conn.execute("UPDATE sync_operations SET status = 'failed', finished_at = now(), error_code = 'test_cleanup'"
                     " WHERE user_id = %s AND status IN ('queued', 'running', 'retrying')", (user,))
        conn.close()


class TestRedisUnreachableFor20Seconds:
    def test_request_sync_raises_sync_unavailable_within_its_timeout(self, redis_outage):
        """Guarantee: while Redis does not answer, `request_sync` neither hangs nor drops the request
        silently: it raises `actors.SyncUnavailable` saying Redis is away, within REDIS_TIMEOUT_S."""
        during = redis_outage["during"]
        assert len(during) >= 3, during
        assert [o["error"] for o in during] == ["SyncUnavailable"] * len(during), during
        assert all("Redis" in o["message"] for o in during), during
        slowest = max(o["elapsed_s"] for o in during)
        assert slowest <= REDIS_TIMEOUT_S + SLACK_S, f"a refused request took {slowest:.2f} s"

    def test_a_refused_request_is_not_half_accepted(self, redis_outage):
        """Guarantee: a request refused during the outage left nothing behind (no audit row, no
        wallet held in Redis): asked again once Redis is back, each is accepted anew and completes."""
        assert redis_outage["written_during"] == 0
        retried = redis_outage["after_retry"]
        assert {o["wallet"] for o in retried} == redis_outage["refused_wallets"]
        ids = accepted_ids(retried)
        rows = redis_outage["rows"]
        assert not_succeeded(rows, ids) == []
        assert inconsistent({i: rows[i] for i in ids}) == []

    def test_workers_and_producers_carry_on_when_it_returns(self, redis_outage):
        """Guarantee: the same worker and producer processes reconnect by themselves: requests made
        after the outage are accepted at once and complete; no process was restarted."""
        ids = accepted_ids(redis_outage["after_new"])
        rows = redis_outage["rows"]
        assert not_succeeded(rows, ids) == []
        assert inconsistent({i: rows[i] for i in ids}) == []
        worker = redis_outage["worker"]
        assert worker.alive() and worker.children() == redis_outage["worker_pids"]

    def test_operations_accepted_before_the_outage_complete(self, redis_outage):
        """Guarantee: every operation accepted before the outage (waiting, fetched by the worker, or
        running when Redis went away) ends `succeeded` once Redis is back, with its holdings stored."""
        rows, before = redis_outage["rows"], redis_outage["before"]
        stuck = not_succeeded(rows, before)
        running_at_freeze = [i for i in before if redis_outage["at_freeze"].get(i) == "running"]
        assert stuck == [], (f"{len(stuck)} of {len(before)} operations accepted before the outage did not "
                             f"finish ({len(running_at_freeze)} were running at the freeze): {stuck}")
        assert inconsistent({i: rows[i] for i in before}) == []


def test_a_redis_outage_longer_than_the_time_limit_leaves_every_worker_thread_alive(
        spare_redis, start_worker, start_producer, db_conn, user_id):
    """Guarantee: Redis unreachable for longer than SYNC_TIME_LIMIT_MS while jobs run and wait does
    not kill worker threads: once it is back, the same worker completes new requests, and no thread
    of it died."""
    threads = 2
    # A fetched message's lease call times out after REDIS_TIMEOUT_S (2 s), inside the time limit (3 s);
    # the Retries middleware's re-enqueue then times out 2 s later, past it.
    env = {**FAST, "REDIS_URL": spare_redis.url, "SYNC_TIME_LIMIT_MS": "3000"}
    worker = start_worker(threads=threads, env=env)
    producer = start_producer(env)
    before = accepted_ids(producer.request(user_id, 10, chains=CHAINS))
    wait_until(lambda: any(r["status"] == "running" for r in audit_rows(db_conn, before).values()), 15,
               "no job started")
    freeze(spare_redis)
    time.sleep(12)  # four times the time limit: each thread meets a running and a fetched message
    thaw(spare_redis)

    after = accepted_ids(producer.request(user_id, 4, first=1000, chains=CHAINS, timeout=30))

    def settled() -> bool:  # done, or no thread left to do it
        rows = audit_rows(db_conn, after)
        return (all(r["status"] in FINAL for r in rows.values())
                or worker.log.count("Exception in thread") >= threads)

    deadline = time.monotonic() + 20
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.25)
    rows = audit_rows(db_conn, after)

    assert worker.log.count("Exception in thread") == 0, "worker threads died"
    assert not_succeeded(rows, after) == []
    assert worker.alive()


# ------------------------------------------------------------ 5. PostgreSQL unreachable for 20 s --

def test_postgres_unreachable_for_20_s_every_operation_finishes_consistently(
        spare_redis, spare_postgres, start_worker, start_producer, user_id, capsys):
    """Guarantee: PostgreSQL stopped for 20 s while jobs run: operations retry and finish once it is
    back; no audit row is lost or left inconsistent: every accepted operation ends `succeeded`, its
    `holdings_count` equals the holdings stored, and no row is left queued, running or retrying.
    Requests made during the outage raise `SyncUnavailable` and leave nothing behind (the wallet is
    not held in Redis); the same producer and worker processes carry on by themselves once PostgreSQL
    is back: the producer accepts requests again within a reconnect attempt (storage.pool's
    RECONNECT_TIMEOUT_S, 4 s) and a connect timeout."""
    pg, url = spare_postgres
    env = {**FAST, "REDIS_URL": spare_redis.url, "DATABASE_URL": url}
    worker = start_worker(threads=4, env=env)
    worker_pids = worker.children()
    producer = start_producer(env)
    namespace = os.environ["SYNC_NAMESPACE"]
    spare = redis.Redis.from_url(spare_redis.url)

    before = accepted_ids(producer.request(user_id, 40, chains=CHAINS))
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        wait_until(lambda: any(r["status"] == "running" for r in audit_rows(conn, before).values()), 15,
                   "no job started")
    pg.stop()
    stopped_at = time.monotonic()

    during: list[dict] = []
    while time.monotonic() - stopped_at < OUTAGE_S - 2 * DB_CONNECT_TIMEOUT_S - SLACK_S:
        during += producer.request(user_id, 1, first=100 + len(during), chains=CHAINS,
                                   timeout=5 * DB_CONNECT_TIMEOUT_S)
    held = [o["wallet"] for o in during if spare.exists(inflight_key(namespace, user_id, o["wallet"]))]
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
    pg.start()
    started_at = time.monotonic()

    # The producer is the same process: it must get through by itself, without a restart.
    after: list[dict] = []
    while time.monotonic() - started_at < 30:
        after = producer.request(user_id, 5, first=1000, chains=CHAINS, timeout=30)
        if all(o["operation_id"] for o in after):
            break
        time.sleep(0.5)
    producer_back_s = time.monotonic() - started_at
    retried = producer.request(user_id, len(during), first=100, chains=CHAINS, timeout=30)
    accepted = before + [o["operation_id"] for o in during + after + retried if o["operation_id"]]

    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        rows = wait_final(conn, accepted, timeout=60)
        unfinished = conn.execute("SELECT id::text, status FROM sync_operations "
                                  "WHERE status NOT IN ('succeeded', 'failed')").fetchall()
        all_ids = {r["id"] for r in conn.execute("SELECT id::text FROM sync_operations").fetchall()}
    finished_s = time.monotonic() - started_at

    assert len(during) >= 3 and all(o["error"] == "SyncUnavailable" for o in during), during
    assert all("PostgreSQL" in o["message"] for o in during), during
    slowest = max(o["elapsed_s"] for o in during)
    assert slowest <= DB_CONNECT_TIMEOUT_S + SLACK_S, f"a refused request took {slowest:.2f} s"
    assert held == [], "wallets of refused requests were left held in Redis"
    assert all(o["operation_id"] for o in after), f"the producer still refused 30 s after PostgreSQL returned: {after}"
    # psycopg_pool's uncapped reconnect backoff once kept producers refusing 8-12 s longer.
    assert producer_back_s <= RECONNECT_TIMEOUT_S + DB_CONNECT_TIMEOUT_S + SLACK_S, (
        f"the producer refused for {producer_back_s:.1f} s after PostgreSQL returned")
    accepted_ids(retried)
    assert not_succeeded(rows, accepted) == []
    assert inconsistent(rows) == []
    assert unfinished == []
    assert all_ids == set(accepted), "audit rows lost, or written for refused requests"
    assert worker.alive() and worker.children() == worker_pids
    with capsys.disabled():
        print(f"\nPostgreSQL outage: producer accepted again {producer_back_s:.1f} s after PostgreSQL returned; "
              f"all {len(accepted)} operations final after {finished_s:.1f} s; "
              f"{sum(r['attempts'] > 1 for r in rows.values())} took more than one attempt, "
              f"{sum(r['requeues'] > 0 for r in rows.values())} were re-sent by the reconciler")
