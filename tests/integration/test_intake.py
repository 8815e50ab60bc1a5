"""``request_sync`` / ``request_syncs`` / ``get_sync`` against the real Redis and PostgreSQL."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

import actors
import actors.worker
from actors.services import context, lifecycle

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


def queued(queue: str = "sync") -> int:
    return actors.worker.broker.client.llen(f"{actors.worker.broker.namespace}:{queue}")


def rows(db_conn, user_id: str) -> list[dict]:
    return db_conn.execute("SELECT * FROM sync_operations WHERE user_id = %s", (user_id,)).fetchall()


def test_accepted_request_writes_a_queued_row_and_one_message(db_conn, user_id, wallet):
    op_id = actors.request_sync(user_id, wallet, [1, 10], priority="low", trigger="api")

    assert uuid.UUID(op_id)
    (row,) = rows(db_conn, user_id)
    assert row["status"] == "queued" and row["attempts"] == 0
    assert row["wallet_address"] == wallet.lower() and row["chain_ids"] == [1, 10]
    assert row["priority"] == "low" and row["trigger"] == "api" and row["provider"] == "simulated"
    assert queued("sync_low") == 1 and queued("sync") == 0 and queued("sync_high") == 0
    assert actors.get_sync(op_id)["status"] == "queued"
    tracked = db_conn.execute("SELECT * FROM tracked_wallets WHERE user_id = %s", (user_id,)).fetchone()
    assert tracked["chain_ids"] == [1, 10] and tracked["last_requested_at"] is not None


def test_no_chain_ids_means_every_configured_chain(db_conn, user_id, wallet):
    actors.request_sync(user_id, wallet)
    assert rows(db_conn, user_id)[0]["chain_ids"] == sorted(actors.services.intake.context.cfg().sync.chains)


@pytest.mark.parametrize("args, kwargs, message", [
    (("", "0x" + "a" * 40), {}, "user_id must be a non-empty string"),
    (("   ", "0x" + "a" * 40), {}, "user_id must be a non-empty string"),
    (("u" * 129, "0x" + "a" * 40), {}, "at most 128 characters"),
    ((None, "0x" + "a" * 40), {}, "user_id must be a non-empty string"),
    (("u", "0x" + "a" * 39), {}, "wallet_address must be '0x' followed by 40 hex digits"),
    (("u", "0x" + "g" * 40), {}, "wallet_address must be '0x' followed by 40 hex digits"),
    (("u", "a" * 42), {}, "wallet_address must be '0x' followed by 40 hex digits"),
    (("u", 12345), {}, "wallet_address must be '0x' followed by 40 hex digits"),
    (("u", "0x" + "a" * 40, [999999]), {}, "unknown chain id 999999"),
    (("u", "0x" + "a" * 40, [1, -1]), {}, "unknown chain id -1"),
    (("u", "0x" + "a" * 40, []), {}, "chain_ids must not be empty"),
    (("u", "0x" + "a" * 40, "1"), {}, "chain_ids must be a list"),
    (("u", "0x" + "a" * 40, [True]), {}, "chain id must be an integer"),
    (("u", "0x" + "a" * 40), {"priority": "urgent"}, "priority must be one of high, normal, low"),
    (("u", "0x" + "a" * 40), {"trigger": "cron"}, "trigger must be one of"),
    (("u", "0x" + "a" * 40), {"force": "yes"}, "force must be true or false"),
])
def test_invalid_requests_raise_and_leave_nothing_behind(db_conn, args, kwargs, message):
    before = db_conn.execute("SELECT count(*) AS n FROM sync_operations").fetchone()["n"]
    with pytest.raises(actors.InvalidSyncRequest, match=message):
        actors.request_sync(*args, **kwargs)
    assert db_conn.execute("SELECT count(*) AS n FROM sync_operations").fetchone()["n"] == before
    assert queued("sync") == queued("sync_high") == queued("sync_low") == 0
    assert not list(actors.worker.broker.client.scan_iter(match=f"{actors.worker.broker.namespace}:sync:inflight:u:*"))


def test_invalid_request_is_a_value_error():
    assert issubclass(actors.InvalidSyncRequest, ValueError)


def test_racing_producers_get_one_operation(db_conn, user_id, wallet):
    barrier = threading.Barrier(16)
    results: list[str] = []

    def produce():
        barrier.wait()
        results.append(actors.request_sync(user_id, wallet, [1]))

    threads = [threading.Thread(target=produce) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert len(results) == 16 and len(set(results)) == 1
    assert len(rows(db_conn, user_id)) == 1
    assert queued("sync") == 1


def test_duplicate_while_queued_returns_the_same_operation(user_id, wallet):
    first = actors.request_sync(user_id, wallet, [1])
    # Another priority or force does not make a second sync while one is pending.
    assert actors.request_sync(user_id, wallet.upper().replace("0X", "0x"), [1], priority="high", force=True) == first
    assert queued("sync") == 1 and queued("sync_high") == 0


def test_cooldown_then_force(user_id, wallet):
    first = actors.request_sync(user_id, wallet, [1])
    lifecycle.sync_portfolio(first)  # runs in this process, on the real Redis and PostgreSQL
    assert actors.get_sync(first)["status"] == "succeeded"

    assert actors.request_sync(user_id, wallet, [1]) == first  # within the cooldown: the last success
    forced = actors.request_sync(user_id, wallet, [1], force=True)
    assert forced != first
    assert actors.get_sync(forced)["status"] == "queued"


def test_cooldown_does_not_follow_a_failure(user_id, wallet, db_conn):
    op_id = actors.request_sync(user_id, wallet, [1])
    lifecycle.fail_unrun(op_id, "expired", "test")
    assert actors.request_sync(user_id, wallet, [1]) != op_id


def test_batch_is_validated_whole_before_anything_happens(db_conn, user_id):
    good = {"user_id": user_id, "wallet_address": "0x" + "1" * 40}
    with pytest.raises(actors.InvalidSyncRequest, match=r"request 2: wallet_address"):
        actors.request_syncs([good, {**good, "wallet_address": "0x" + "2" * 40}, {**good, "wallet_address": "x"}])
    with pytest.raises(actors.InvalidSyncRequest, match=r"request 0: unknown field\(s\): colour"):
        actors.request_syncs([{**good, "colour": "red"}])
    with pytest.raises(actors.InvalidSyncRequest, match=r"request 0: user_id and wallet_address are required"):
        actors.request_syncs([{"user_id": user_id}])
    assert rows(db_conn, user_id) == []
    assert queued("sync") == 0


def test_batch_uses_one_round_trip_per_store(db_conn, user_id, monkeypatch):
    calls = {"pipeline": 0, "command": 0}
    real_execute, real_command = redis.client.Pipeline.execute, redis.Redis.execute_command

    def counting_execute(self, *a, **k):
        calls["pipeline"] += 1
        return real_execute(self, *a, **k)

    def counting_command(self, *a, **k):
        calls["command"] += 1
        return real_command(self, *a, **k)

    # Redis's clock asks for TIME once every 30 s: not a round trip of the batch's.
    clock = context.admissions().clock
    clock.calibrate()
    monkeypatch.setattr(clock, "refresh_s", 3600)  # even if that calibration was too slow to be kept
    monkeypatch.setattr(redis.client.Pipeline, "execute", counting_execute)
    monkeypatch.setattr(redis.Redis, "execute_command", counting_command)
    wallets = ["0x" + f"{i:040x}" for i in range(1, 201)]
    requests = [{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets]
    requests.append({"user_id": user_id, "wallet_address": wallets[0]})  # a duplicate inside the batch

    ids = actors.request_syncs(requests)

    assert len(ids) == 201 and len(set(ids)) == 200 and ids[-1] == ids[0]
    assert calls == {"pipeline": 2, "command": 0}  # admissions, then messages; no per-wallet round trip
    assert len(rows(db_conn, user_id)) == 200
    assert queued("sync") == 200


def test_enqueue_failure_is_reported_and_recorded(user_id, wallet, monkeypatch, db_conn):
    def broken(messages):
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(actors.worker.broker, "send_encoded", broken)
    with pytest.raises(actors.SyncUnavailable, match="Redis did not take"):
        actors.request_sync(user_id, wallet, [1])
    (row,) = rows(db_conn, user_id)
    assert row["status"] == "failed" and row["error_code"] == "enqueue_failed"
    monkeypatch.undo()
    # The wallet was released: a new request is accepted at once.
    assert actors.request_sync(user_id, wallet, [1]) != row["id"]


@pytest.mark.parametrize("count", [1, 20])  # encoded after the insert, or while it runs
def test_messages_that_cannot_be_made_withdraw_their_rows_and_wallets(user_id, monkeypatch, db_conn, count):
    def broken(messages):
        raise ValueError("an encoder bug")

    monkeypatch.setattr(actors.worker.broker, "encode_batch", broken)
    wallets = ["0x" + f"{i:040x}" for i in range(1, count + 1)]
    with pytest.raises(ValueError, match="an encoder bug"):
        actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets])
    assert {(r["status"], r["error_code"]) for r in rows(db_conn, user_id)} == {("failed", "enqueue_failed")}
    monkeypatch.undo()
    # The wallets were released: new requests are accepted at once.
    assert len(set(actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]}
                                         for w in wallets]))) == count


def test_an_admission_redis_runs_after_the_callers_deadline_takes_no_wallet(user_id, wallet, redis_client):
    """A stalled Redis runs the commands it received once it resumes, after the producer gave up and
    refused the request: the admission script then declines, so the wallet is not held for an
    operation that will never exist.  (Here the deadline is simply already past when it arrives.)"""
    from actors.redis_backed.admission import Admissions
    from actors.services import context

    admissions = context.admissions()
    late = Admissions(admissions.client, namespace=admissions.namespace, inflight_ttl_ms=admissions.inflight_ttl_ms,
                      cooldown_s=admissions.cooldown_s, deadline_ms=-1000)
    with pytest.raises(redis.TimeoutError, match="more than -1000 ms after it was sent"):
        late.admit_many([(user_id, wallet.lower(), str(uuid.uuid4()), False)])
    assert redis_client.exists(*admissions._keys(user_id, wallet.lower())) == 0
    assert actors.request_sync(user_id, wallet, [1])  # and a request in time is accepted


def test_a_batch_refused_half_way_gives_back_the_wallets_its_first_part_took(user_id, redis_client, monkeypatch):
    """A batch is decided a thousand requests per script call; if Redis runs a later call past the
    deadline, the whole batch is refused, and what the calls in time took is given back."""
    from actors.redis_backed import admission
    from actors.services import context

    admissions = context.admissions()
    now = admissions.clock.now_ms()
    clock = iter([now, now - 60_000])  # the first call in time, the second's deadline a minute in the past
    monkeypatch.setattr(admission, "_ADMIT_CHUNK", 1)
    monkeypatch.setattr(admissions.clock, "now_ms", lambda: next(clock))
    # Redis answered only once the caller's budget was spent: it was stalled.
    stalled = iter([0.0, admissions.deadline_ms + 1.0])
    monkeypatch.setattr(admission, "monotonic_ms", lambda: next(stalled))
    given_back = []
    real_give_back = admissions.give_back
    monkeypatch.setattr(admissions, "give_back", lambda taken: given_back.append(list(taken)) or real_give_back(taken))
    wallets = ["0x" + f"{i:040x}" for i in (8201, 8202)]
    with pytest.raises(redis.TimeoutError):
        admissions.admit_many([(user_id, w, str(uuid.uuid4()), False) for w in wallets])
    assert [[t[1] for t in taken] for taken in given_back] == [wallets[:1]]  # the first call had taken one
    assert redis_client.exists(*[admissions._keys(user_id, w)[0] for w in wallets]) == 0


def test_get_sync(user_id, wallet):
    assert actors.get_sync(str(uuid.uuid4())) is None
    with pytest.raises(actors.InvalidSyncRequest, match="operation_id must be a UUID"):
        actors.get_sync("'; DROP TABLE sync_operations; --")


def test_sql_and_html_lookalikes_are_stored_as_text(db_conn, wallet):
    user = "'); DROP TABLE holdings; -- <script>alert(1)</script>"
    op_id = actors.request_sync(user, wallet, [1])
    lifecycle.sync_portfolio(op_id)
    assert actors.get_sync(op_id)["user_id"] == user
    assert db_conn.execute("SELECT count(*) AS n FROM holdings WHERE user_id = %s", (user,)).fetchone()["n"] > 0


from hypothesis import HealthCheck, given, settings as hypothesis_settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_anything = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                      st.floats(allow_nan=True), st.text(max_size=300), st.binary(max_size=50),
                      st.lists(st.integers(min_value=-2**70, max_value=2**70), max_size=5))


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.one_of(_anything, st.text(min_size=1, max_size=140)),
       wallet=st.one_of(_anything, st.from_regex(r"0x[0-9a-fA-F]{40}", fullmatch=True)),
       chains=st.one_of(st.none(), _anything, st.lists(st.sampled_from([1, 10, 137, -1, 0, 2**63]), max_size=4)),
       priority=st.one_of(st.sampled_from(["high", "normal", "low"]), _anything))
def test_any_request_is_accepted_whole_or_rejected_with_nothing_written(db_conn, user, wallet, chains, priority):
    before = db_conn.execute("SELECT count(*) AS n FROM sync_operations").fetchone()["n"]
    try:
        op_id = actors.request_sync(user, wallet, chains, priority=priority, force=True)
    except actors.InvalidSyncRequest as exc:
        assert str(exc)
        assert db_conn.execute("SELECT count(*) AS n FROM sync_operations").fetchone()["n"] == before
    else:
        row = db_conn.execute("SELECT * FROM sync_operations WHERE id = %s", (op_id,)).fetchone()
        assert row["user_id"] == user and row["wallet_address"] == wallet.lower()
    actors.worker.broker.flush_all()
