"""The scheduler's tick logic, housekeeping and tracking API against the real Redis and PostgreSQL.

Ticks are run directly (``run_resync_tick``); tests/acceptance/test_periodiq.py runs them through
real ``periodiq`` processes.  Every test starts from no tracked wallet, no tick and empty queues.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid

import pytest
from dramatiq import Message

import actors
import actors.worker
from actors.middleware.periodic_skips import PeriodicSkips
from actors.services import context, scheduler
from storage import operations, scheduling

pytestmark = pytest.mark.integration

MINUTE = 60
HOUR = 3600


@pytest.fixture(autouse=True)
def clean_slate(clean_queues, db_conn):
    db_conn.execute("DELETE FROM tracked_wallets")
    db_conn.execute("DELETE FROM scheduler_ticks")


def policy(**changes) -> scheduler.TickPolicy:
    base = scheduler.TickPolicy.from_settings(context.cfg())
    staleness = {k: changes.pop(k) for k in list(changes) if hasattr(base.staleness, k)}
    return dataclasses.replace(base, staleness=dataclasses.replace(base.staleness, **staleness), **changes)


def tick(rules: scheduler.TickPolicy | None = None) -> scheduler.TickReport:
    report = scheduler.run_resync_tick(dt.datetime.now(dt.timezone.utc), scheduler_id="test", policy=rules)
    assert report is not None
    return report


def address(n: int) -> str:
    return "0x" + f"{n:040x}"


def seed(db_conn, user: str, n: int, *, start: int = 1, chains=(1,), requested_s: float | None = None,
         success_s: float | None = None, failures: int = 0, failure_s: float | None = None,
         status: str = "active") -> list[str]:
    """Track wallets ``start .. start+n-1`` of ``user``; the ``*_s`` are ages in seconds (None: never)."""
    db_conn.execute("""
        INSERT INTO tracked_wallets (user_id, wallet_address, chain_ids, status, last_requested_at,
                                     last_success_at, last_failure_at, consecutive_failures)
        SELECT %(user)s, '0x' || lpad(to_hex(i), 40, '0'), %(chains)s, %(status)s,
               now() - %(requested_s)s * interval '1 second', now() - %(success_s)s * interval '1 second',
               now() - %(failure_s)s * interval '1 second', %(failures)s
        FROM generate_series(%(start)s::int, %(end)s::int) AS i""",
        {"user": user, "chains": list(chains), "status": status, "requested_s": requested_s,
         "success_s": success_s, "failure_s": failure_s, "failures": failures, "start": start,
         "end": start + n - 1})
    return [address(i) for i in range(start, start + n)]


def scheduled(db_conn, user: str) -> dict[str, int]:
    """wallet -> number of scheduled operations of ``user``."""
    rows = db_conn.execute("""SELECT wallet_address, count(*) AS n FROM sync_operations
                              WHERE user_id = %s AND trigger = 'scheduled' GROUP BY wallet_address""",
                           (user,)).fetchall()
    return {r["wallet_address"]: r["n"] for r in rows}


def low_queue() -> int:
    return actors.worker.broker.client.llen(f"{actors.worker.broker.namespace}:sync_low")


def states(user: str) -> dict[str, str]:
    return {r["wallet_address"]: r["state"] for r in scheduler.wallet_health(user_id=user, limit=1000)}


# ------------------------------------------------------------------------------ stale selection --

def test_stale_selection_per_tier(db_conn, user_id):
    active_stale = seed(db_conn, user_id, 1, start=1, requested_s=HOUR, success_s=6 * MINUTE)
    active_fresh = seed(db_conn, user_id, 1, start=2, requested_s=HOUR, success_s=2 * MINUTE)
    active_never = seed(db_conn, user_id, 1, start=3, requested_s=10 * MINUTE)
    idle_stale = seed(db_conn, user_id, 1, start=4, requested_s=3 * 24 * HOUR, success_s=25 * HOUR)
    idle_fresh = seed(db_conn, user_id, 1, start=5, requested_s=3 * 24 * HOUR, success_s=23 * HOUR)
    idle_never_requested = seed(db_conn, user_id, 1, start=6)
    idle_recently_synced = seed(db_conn, user_id, 1, start=7, requested_s=25 * HOUR, success_s=HOUR)
    paused = seed(db_conn, user_id, 1, start=8, status="paused")
    stale = {*active_stale, *active_never, *idle_stale, *idle_never_requested}

    before = states(user_id)
    assert {w for w, s in before.items() if s == "stale"} == stale  # the dashboard agrees with the tick
    assert before[paused[0]] == "paused"
    assert {before[w] for w in (*active_fresh, *idle_fresh, *idle_recently_synced)} == {"fresh"}
    tiers = {r["wallet_address"]: r["tier"] for r in scheduler.wallet_health(user_id=user_id)}
    assert tiers[active_stale[0]] == "active" and tiers[idle_stale[0]] == "idle"

    report = tick()

    assert scheduled(db_conn, user_id) == {w: 1 for w in stale}
    assert (report.stale_count, report.requested_count, report.held_back_count) == (4, 4, 0)
    assert report.reason == "all_requested"
    assert low_queue() == 4
    ops = db_conn.execute("SELECT priority, trigger FROM sync_operations WHERE user_id = %s", (user_id,)).fetchall()
    assert {(o["priority"], o["trigger"]) for o in ops} == {("low", "scheduled")}
    # A scheduled request does not make a wallet look active.
    idle = db_conn.execute("SELECT last_requested_at FROM tracked_wallets WHERE wallet_address = %s",
                           (idle_never_requested[0],)).fetchone()
    assert idle["last_requested_at"] is None
    assert set(states(user_id).values()) == {"in_flight", "fresh", "paused"}
    row = db_conn.execute("SELECT * FROM scheduler_ticks WHERE schedule = 'resync_stale_wallets'").fetchone()
    assert (row["stale_count"], row["requested_count"], row["held_back_count"], row["backlog"]) == (4, 4, 0, 0)
    assert row["finished_at"] is not None and row["scheduler_id"] == "test"
    assert row["details"]["reason"] == "all_requested" and row["details"]["policy"]["backlog_limit"] > 0

    # Nothing is requested twice while the first requests are in flight.
    again = tick()
    assert again.requested_count == 0 and again.stale_count == 0 and again.details["in_flight"] == 4
    assert scheduled(db_conn, user_id) == {w: 1 for w in stale}


def test_tier_intervals_are_configurable(db_conn, user_id):
    wallets = seed(db_conn, user_id, 1, start=1, requested_s=HOUR, success_s=2 * MINUTE)
    idle = seed(db_conn, user_id, 1, start=2, success_s=2 * HOUR)
    assert tick().requested_count == 0
    report = tick(policy(active_interval_s=MINUTE, idle_interval_s=HOUR))
    assert report.requested_count == 2 and scheduled(db_conn, user_id) == {wallets[0]: 1, idle[0]: 1}


def test_ticks_missed_while_down_are_caught_up_once(db_conn, user_id):
    # The scheduler was down for three hours: its last tick is that old, and wallets fell due all along.
    db_conn.execute("INSERT INTO scheduler_ticks (schedule, tick_at, finished_at) "
                    "VALUES ('resync_stale_wallets', now() - interval '3 hours', now() - interval '3 hours')")
    due = []
    for n, age in enumerate([3 * HOUR, 2 * HOUR, HOUR, 10 * MINUTE], start=1):
        due += seed(db_conn, user_id, 1, start=n, requested_s=4 * HOUR, success_s=age)
    fresh = seed(db_conn, user_id, 1, start=9, requested_s=4 * HOUR, success_s=MINUTE)

    first = tick(policy(max_per_tick=2))  # stalest first
    assert scheduled(db_conn, user_id) == {due[0]: 1, due[1]: 1}
    assert first.reason == "max_per_tick" and first.held_back_count == 2

    second = tick()
    assert second.requested_count == 2
    assert scheduled(db_conn, user_id) == {w: 1 for w in due}  # every missed wallet once, none twice
    assert fresh[0] not in scheduled(db_conn, user_id)
    assert tick().requested_count == 0


def test_a_tick_runs_once_whatever_the_deliveries(db_conn, user_id):
    seed(db_conn, user_id, 3)
    tick_at = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert scheduler.run_resync_tick(tick_at).requested_count == 3
    db_conn.execute("UPDATE tracked_wallets SET last_operation_id = NULL WHERE user_id = %s", (user_id,))
    assert scheduler.run_resync_tick(tick_at) is None  # a second delivery of the same tick does nothing
    assert sum(scheduled(db_conn, user_id).values()) == 3


# ------------------------------------------------------------------------------ failures back off --

def test_failing_wallets_back_off_exponentially_up_to_the_cap(db_conn, user_id):
    # Defaults: base 5 min, cap 24 h.  Next eligible at last_failure + min(cap, base * 2^(n-1)).
    backing_off = [*seed(db_conn, user_id, 1, start=1, failures=1, failure_s=2 * MINUTE),     # 5 min
                   *seed(db_conn, user_id, 1, start=2, failures=3, failure_s=15 * MINUTE),    # 20 min
                   *seed(db_conn, user_id, 1, start=3, failures=20, failure_s=23 * HOUR)]     # cap 24 h
    eligible = [*seed(db_conn, user_id, 1, start=4, failures=1, failure_s=6 * MINUTE),
                *seed(db_conn, user_id, 1, start=5, failures=3, failure_s=21 * MINUTE),
                *seed(db_conn, user_id, 1, start=6, failures=20, failure_s=25 * HOUR)]

    health = {r["wallet_address"]: r for r in scheduler.wallet_health(user_id=user_id)}
    assert {health[w]["state"] for w in backing_off} == {"backing_off"}
    assert {health[w]["state"] for w in eligible} == {"stale"}
    until = health[backing_off[2]]["backoff_until"] - health[backing_off[2]]["last_failure_at"]
    assert until == dt.timedelta(hours=24)
    counts = {(c["state"], c["tier"]): c["wallets"] for c in scheduler.wallet_health_counts()}
    assert counts == {("backing_off", "idle"): 3, ("stale", "idle"): 3}

    report = tick()
    assert scheduled(db_conn, user_id) == {w: 1 for w in eligible}
    assert report.details["backing_off"] == 3 and report.stale_count == 3


def test_a_failed_scheduled_sync_makes_its_wallet_back_off(db_conn, user_id):
    (wallet,) = seed(db_conn, user_id, 1)
    tick()
    (op,) = db_conn.execute("SELECT id::text FROM sync_operations WHERE user_id = %s", (user_id,)).fetchall()
    operations.finish_attempt(op["id"], operations.AttemptOutcome(
        status="failed", holdings=[], synced_chains=[], chain_results={}, holdings_count=None,
        total_value_usd=None, unpriced_count=None, as_of=dt.datetime.now(dt.timezone.utc), provider="simulated",
        error_code="provider_rejected", error_message="test"))
    context.admissions().release(user_id, wallet, op["id"], succeeded=False)

    assert states(user_id) == {wallet: "backing_off"}
    assert tick().requested_count == 0
    db_conn.execute("UPDATE tracked_wallets SET last_failure_at = now() - interval '6 minutes'")
    assert tick().requested_count == 1


# ------------------------------------------------------------------------------- backpressure --

def test_backpressure_holds_back_at_the_threshold(db_conn, user_id, redis_client):
    seed(db_conn, user_id, 30)
    redis_client.rpush(f"{actors.worker.broker.namespace}:sync_low", *[f"placeholder-{i}" for i in range(10)])
    redis_client.rpush(f"{actors.worker.broker.namespace}:sync_low.DQ", *[f"placeholder-{i}" for i in range(5)])
    rules = policy(backlog_limit=20, batch_size=2)

    first = tick(rules)
    assert (first.backlog, first.stale_count, first.requested_count, first.held_back_count) == (15, 30, 5, 25)
    assert first.reason == "backlog_limit" and first.details["batches"] == 3
    assert first.details["backlog_after"] == 20

    second = tick(rules)  # the backlog is at the limit: nothing
    assert (second.backlog, second.requested_count) == (20, 0)
    assert second.reason == "backlog_full" and second.held_back_count == 25

    actors.worker.broker.flush_all()  # the workers drained the queue
    third = tick(policy(backlog_limit=20, batch_size=500, max_per_tick=8))
    assert third.requested_count == 8 and third.reason == "max_per_tick"
    assert sum(scheduled(db_conn, user_id).values()) == 13 and max(scheduled(db_conn, user_id).values()) == 1
    row = db_conn.execute("SELECT * FROM scheduler_ticks ORDER BY started_at LIMIT 1").fetchone()
    assert (row["backlog"], row["held_back_count"], row["details"]["reason"]) == (15, 25, "backlog_limit")


def test_backlog_is_measured_again_between_batches(db_conn, user_id, redis_client, monkeypatch):
    seed(db_conn, user_id, 10)
    real = actors.request_syncs

    def busy_producer(requests):  # another producer floods the low queue while the tick runs
        ids = real(requests)
        redis_client.rpush(f"{actors.worker.broker.namespace}:sync_low", *["other"] * 5)
        return ids

    monkeypatch.setattr("actors.services.intake.request_syncs", busy_producer)
    report = tick(policy(backlog_limit=12, batch_size=2))
    # batch 1: 2 (backlog 7), batch 2: 2 (backlog 14): then nothing more.
    assert report.requested_count == 4 and report.reason == "backlog_limit"


def test_a_wallet_that_cannot_be_requested_does_not_block_the_others(db_conn, user_id):
    good = seed(db_conn, user_id, 3, start=1)
    seed(db_conn, user_id, 1, start=4, chains=(999_999,))  # a chain no longer in SYNC_CHAINS
    seed(db_conn, "   ", 1, start=5)  # a user id request_sync would refuse
    report = tick()
    assert scheduled(db_conn, user_id) == {w: 1 for w in good}
    assert report.details["no_supported_chain"] == 1 and report.details["invalid"] == 1


# ----------------------------------------------------------------------- exactly-once sending --

def test_one_scheduler_wins_each_tick(redis_client):
    actor = actors.worker.PERIODIC_ACTORS["resync_stale_wallets"]
    queue = f"{actors.worker.broker.namespace}:periodic"
    minute = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0) + dt.timedelta(days=400)
    # Schedulers wake a little apart and may run in other time zones: still one tick.
    stamps = [(minute + dt.timedelta(seconds=s)).astimezone(dt.timezone(dt.timedelta(hours=h))).isoformat()
              for s, h in [(0, 0), (0, 2), (1, -5), (3, 0), (0, 9), (2, 1), (0, 0), (4, -3)]]
    barrier = threading.Barrier(len(stamps))
    sent = []

    def schedule(stamp):
        barrier.wait()
        sent.append(actor.send_with_options(scheduled_at=stamp))

    threads = [threading.Thread(target=schedule, args=(s,)) for s in stamps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert len([m for m in sent if m is not None]) == 1
    assert redis_client.llen(queue) == 1
    (message,) = [m for m in sent if m is not None]
    assert message.options["tick_at"] == minute.isoformat()
    key = scheduler.tick_key(actors.worker.broker.namespace, actor.actor_name, minute)
    assert 0 < redis_client.ttl(key) <= scheduler.TICK_KEY_TTL_S

    actor.send_with_options(scheduled_at=(minute + dt.timedelta(minutes=1)).isoformat())  # the next tick
    actor.send()  # sent by hand: not deduplicated
    assert redis_client.llen(queue) == 3


def test_a_skipped_tick_is_recorded(db_conn):
    actor = actors.worker.PERIODIC_ACTORS["resync_stale_wallets"]
    tick_at = dt.datetime(2031, 1, 1, 0, 0, tzinfo=dt.timezone.utc)
    message = Message(queue_name="periodic", actor_name=actor.actor_name, args=(), kwargs={},
                      options={"scheduled_at": tick_at.isoformat(), "tick_at": tick_at.isoformat(),
                               "scheduler_id": "s1"})
    PeriodicSkips().after_skip_message(actors.worker.broker, message)
    row = db_conn.execute("SELECT * FROM scheduler_ticks WHERE tick_at = %s", (tick_at,)).fetchone()
    assert row["details"]["reason"] == "skipped" and row["scheduler_id"] == "s1"
    assert scheduler.run_resync_tick(tick_at) is None  # a late delivery of it does nothing


# -------------------------------------------------------------------------------- housekeeping --

def insert_operation(db_conn, user: str, *, age_days: float, status: str) -> str:
    op_id = str(uuid.uuid4())
    # Housekeeping creates partitions ahead only; a row back-dated into the past needs its week's.
    db_conn.execute("SELECT sync_operations_add_partitions(now() - %(age)s * interval '1 day',"
                    " now() - %(age)s * interval '1 day' + interval '1 second')", {"age": age_days})
    db_conn.execute("""
        INSERT INTO sync_operations (id, user_id, wallet_address, chain_ids, priority, trigger, provider, status,
                                     enqueued_at, finished_at)
        VALUES (%(id)s, %(user)s, %(wallet)s, '{1}', 'low', 'scheduled', 'simulated', %(status)s,
                now() - %(age)s * interval '1 day',
                CASE WHEN %(status)s IN ('succeeded', 'failed') THEN now() - %(age)s * interval '1 day' END)""",
        {"id": op_id, "user": user, "wallet": address(1), "status": status, "age": age_days})
    return op_id


def partition_of(db_conn, op_id: str) -> str:
    return db_conn.execute("SELECT tableoid::regclass::text AS p FROM sync_operations WHERE id = %s",
                           (op_id,)).fetchone()["p"]


def test_retention_drops_whole_old_partitions_without_a_delete(db_conn, user_id):
    old_done = [insert_operation(db_conn, user_id, age_days=40, status=s)
                for s in ("succeeded", "failed", "succeeded", "failed", "succeeded")]
    old_unfinished = [insert_operation(db_conn, user_id, age_days=54, status=s)
                      for s in ("queued", "running", "retrying")]
    old_beside_unfinished = insert_operation(db_conn, user_id, age_days=54, status="succeeded")
    recent = [insert_operation(db_conn, user_id, age_days=29, status="succeeded"),
              insert_operation(db_conn, user_id, age_days=1, status="failed")]
    doomed, busy = partition_of(db_conn, old_done[0]), partition_of(db_conn, old_unfinished[0])
    # Every row removed from any partition, by whatever statement, would be counted here.
    db_conn.execute("CREATE TABLE retention_deletes (n int)")
    db_conn.execute("CREATE FUNCTION count_retention_delete() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN INSERT INTO retention_deletes VALUES (1); RETURN OLD; END $$")
    db_conn.execute("CREATE TRIGGER retention_deletes AFTER DELETE ON sync_operations "
                    "FOR EACH ROW EXECUTE FUNCTION count_retention_delete()")
    try:
        result = scheduling.drop_old_operation_partitions(days=30)
        deletes = db_conn.execute("SELECT count(*) AS n FROM retention_deletes").fetchone()["n"]
    finally:
        db_conn.execute("DROP TRIGGER retention_deletes ON sync_operations")
        db_conn.execute("DROP FUNCTION count_retention_delete()")
        db_conn.execute("DROP TABLE retention_deletes")

    assert doomed in result.dropped and busy in result.kept and deletes == 0
    assert db_conn.execute("SELECT to_regclass(%s) AS r", (doomed,)).fetchone()["r"] is None
    left = {r["id"] for r in db_conn.execute("SELECT id::text FROM sync_operations WHERE user_id = %s",
                                             (user_id,)).fetchall()}
    assert left == {*old_unfinished, old_beside_unfinished, *recent}
    assert not left & set(old_done)
    # Weeks ahead exist, and asking again creates none twice.
    scheduling.add_operation_partitions(ahead_days=21)
    assert scheduling.add_operation_partitions(ahead_days=21) == 0
    assert db_conn.execute("SELECT max(upper_bound) > now() + interval '21 days' AS ahead"
                           " FROM sync_operations_partition_bounds()").fetchone()["ahead"]


def test_housekeeping_runs_every_task_records_it_and_survives_a_failing_one(db_conn, user_id):
    insert_operation(db_conn, user_id, age_days=400, status="succeeded")
    db_conn.execute("INSERT INTO scheduler_ticks (schedule, tick_at) VALUES ('resync_stale_wallets', "
                    "now() - interval '400 days')")

    def broken():
        raise RuntimeError("task exploded")

    tasks = [scheduler.HousekeepingTask("broken", broken), *scheduler.HOUSEKEEPING_TASKS]
    tick_at = dt.datetime.now(dt.timezone.utc)
    results = scheduler.run_housekeeping(tick_at, tasks=tasks)

    assert [t.name for t in scheduler.HOUSEKEEPING_TASKS] == [
        "sync_operations_partitions", "sync_operations_retention", "sync_rollups_compaction",
        "sync_rollups_days", "sync_rollups_user_spans", "scheduler_ticks_retention", "redis_cleanup", "reconcile"]
    assert "task exploded" in results["broken"]["error"]
    assert results["sync_operations_retention"]["dropped"]
    assert results["scheduler_ticks_retention"]["rows"] == 1
    assert "error" not in results["sync_rollups_compaction"] and results["sync_rollups_compaction"]["more"] is False
    assert "error" not in results["sync_rollups_days"]  # (other tests' old hours may leave more days to roll up)
    assert "error" not in results["sync_rollups_user_spans"]
    assert set(results["sync_rollups_user_spans"]["through"]) == {1, 7, 30}
    assert "error" not in results["redis_cleanup"] and "error" not in results["reconcile"]
    row = db_conn.execute("SELECT * FROM scheduler_ticks WHERE schedule = 'housekeeping'").fetchone()
    assert row["finished_at"] is not None and set(row["details"]["results"]) == {t.name for t in tasks}
    assert scheduler.run_housekeeping(tick_at, tasks=tasks) is None  # once per tick


def test_redis_cleanup_touches_only_what_outlived_its_purpose(redis_client):
    ns = actors.worker.broker.namespace
    heartbeats = f"{ns}:__heartbeats__"
    now_ms = int(time.time() * 1000)
    redis_client.zadd(heartbeats, {"gone-producer": now_ms - 2 * 86_400_000, "gone-with-acks": now_ms - 2 * 86_400_000,
                                   "alive": now_ms})
    redis_client.sadd(f"{ns}:__acks__.gone-with-acks.sync_low", "some-message")
    no_ttl = [f"{ns}:sync:inflight:u:{address(1)}", f"{ns}:sync:recent:u:{address(2)}", f"{ns}:price:1:{address(3)}"]
    for key in no_ttl:
        redis_client.set(key, "x")
    redis_client.set(f"{ns}:sync:inflight:u:{address(4)}", "x", ex=50)
    unrelated = [f"{ns}:quarantine-like", f"other-{uuid.uuid4().hex}:sync:inflight:u:x"]
    for key in unrelated:
        redis_client.set(key, "x")
    try:
        queues = actors.worker.broker.get_declared_queues() | actors.worker.broker.get_declared_delay_queues()
        families = {"sync:inflight": 4000, "sync:recent": 60, "price": 300, "tick": 3600}
        result = {}
        for _ in range(100):  # the walk resumes run after run until it has seen the whole keyspace
            result = scheduler.clean_redis_keys(redis_client, ns, queues=queues, ttl_families=families)
            if result["scan_complete"]:
                break
        assert result["scan_complete"]

        left = set(redis_client.zrange(heartbeats, 0, -1))
        assert b"gone-producer" not in left and {b"gone-with-acks", b"alive"} <= left
        assert [0 < redis_client.ttl(k) for k in no_ttl] == [True] * 3
        assert redis_client.ttl(no_ttl[0]) > 3000 and redis_client.ttl(no_ttl[1]) <= 60
        assert redis_client.ttl(f"{ns}:sync:inflight:u:{address(4)}") <= 50  # had a TTL: untouched
        assert [redis_client.ttl(k) for k in unrelated] == [-1, -1]
    finally:
        redis_client.delete(*no_ttl, *unrelated, heartbeats, f"{ns}:__acks__.gone-with-acks.sync_low")


# ---------------------------------------------------------------------------------- tracking --

def test_track_pause_resume_untrack(db_conn, user_id, wallet):
    created = actors.track_wallet(user_id, wallet, [8453, 1])
    assert created["created"] and created["chain_ids"] == [1, 8453] and created["status"] == "active"
    assert created["wallet_address"] == wallet.lower()
    again = actors.track_wallet(user_id, wallet.upper().replace("0X", "0x"))
    assert not again["created"] and again["chain_ids"] == sorted(context.cfg().sync.chains)

    assert actors.pause_wallet(user_id, wallet)
    assert tick().requested_count == 0 and states(user_id) == {wallet.lower(): "paused"}
    assert actors.resume_wallet(user_id, wallet)
    assert tick().requested_count == 1
    (op,) = db_conn.execute("SELECT chain_ids FROM sync_operations WHERE user_id = %s", (user_id,)).fetchall()
    assert op["chain_ids"] == sorted(context.cfg().sync.chains)

    assert actors.untrack_wallet(user_id, wallet)
    assert not actors.untrack_wallet(user_id, wallet)
    assert not actors.pause_wallet(user_id, wallet) and not actors.resume_wallet(user_id, wallet)
    assert states(user_id) == {}

    actors.track_wallet(user_id, wallet, [1])
    assert actors.pause_wallet(user_id, wallet)
    assert actors.track_wallet(user_id, wallet, [1])["status"] == "active"  # tracking again resumes it


@pytest.mark.parametrize("call, args, message", [
    ("track_wallet", ("u", "0x123"), "wallet_address must be '0x' followed by 40 hex digits"),
    ("track_wallet", ("", address(1)), "user_id must be a non-empty string"),
    ("track_wallet", ("u", address(1), [999_999]), "unknown chain id 999999"),
    ("track_wallet", ("u", address(1), []), "chain_ids must not be empty"),
    ("pause_wallet", ("u" * 129, address(1)), "at most 128 characters"),
    ("resume_wallet", ("u", None), "wallet_address must be"),
    ("untrack_wallet", (None, address(1)), "user_id must be a non-empty string"),
])
def test_tracking_api_validates_like_request_sync(db_conn, call, args, message):
    with pytest.raises(actors.InvalidSyncRequest, match=message):
        getattr(actors, call)(*args)
    assert db_conn.execute("SELECT count(*) AS n FROM tracked_wallets").fetchone()["n"] == 0
