"""Lookups by id bounded to the partitions their ids' times name (storage.operations): an operation whose
id's time is days off its ``enqueued_at`` (a skewed producer clock), or has no time (a version 4 id, made
before ids had one), is still found, started and finished once; a duplicate delivery is still a no-op."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest

import actors
from actors.ids import uuid4_string, uuid7_strings
from storage import operations
from storage.operations import AttemptOutcome, NewOperation
from tests.unit.test_ids import uuid7_at

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def _outcome(status: str) -> AttemptOutcome:
    return AttemptOutcome(status=status, holdings=[], synced_chains=[], chain_results={}, holdings_count=0,
                          total_value_usd=None, unpriced_count=0, as_of=dt.datetime.now(dt.timezone.utc),
                          provider="simulated")


def _ids() -> dict[str, str]:
    """One id of each kind a lookup meets, by what its time says of the row's ``enqueued_at`` (now)."""
    now_ms = int(time.time() * 1000)
    return {"on time": uuid7_strings(1)[0], "3 days slow": uuid7_at(now_ms - 3 * DAY_MS),
            "10 days fast": uuid7_at(now_ms + 10 * DAY_MS), "no time": uuid4_string()}


def _insert(user_id: str, ids: list[str]) -> None:
    operations.insert_operations([NewOperation(op_id, user_id, "0x" + uuid.uuid4().hex + "0" * 8, (1,), "normal", "api")
                                  for op_id in ids], provider="simulated")


def test_a_start_and_a_finish_find_their_row_whatever_their_ids_time_and_a_duplicate_is_a_no_op(db_conn, user_id):
    ids = _ids()
    _insert(user_id, list(ids.values()))
    for kind, op_id in ids.items():
        row = operations.start_attempt(op_id, worker_id="w1", message_id="m1")
        assert row is not None and row["attempts"] == 1, kind
        assert operations.finish_attempt(op_id, _outcome("retrying")), kind
        assert operations.start_attempt(op_id, worker_id="w1", message_id="m2")["attempts"] == 2, kind
        assert operations.finish_attempt(op_id, _outcome("succeeded")), kind
        # A duplicate delivery of the final operation: found in no partition, bounded or not; nothing changes.
        assert operations.start_attempt(op_id, worker_id="w2", message_id="m3") is None, kind
        assert not operations.finish_attempt(op_id, _outcome("failed")), kind
        assert operations.fail_operation(op_id, error_code="expired", error_message="too old") is None, kind
        assert operations.get_operation(op_id)["status"] == "succeeded", kind
        assert operations.read_operation(op_id)["attempts"] == 2, kind
    stored = db_conn.execute("SELECT status, attempts, worker_id, message_id FROM sync_operations WHERE user_id = %s",
                             (user_id,)).fetchall()
    assert stored == [{"status": "succeeded", "attempts": 2, "worker_id": "w1", "message_id": "m2"}] * len(ids)


def test_one_batch_runs_one_bounded_statement_and_one_unbounded_for_what_it_missed(monkeypatch, user_id):
    ids = _ids()
    unknown = uuid7_strings(1)[0]
    _insert(user_id, list(ids.values()))
    statements = []
    start_rows = operations._start_rows

    def counted(calls, bound):
        statements.append(([c[0] for c in calls], bound))
        return start_rows(calls, bound)

    monkeypatch.setattr(operations, "_start_rows", counted)
    # Every row was enqueued now.  Bounded by the times of its ids, [3 days slow - margin, on time + margin)
    # (the id without a time is left out of it), a batch finds its rows but the id no row has, which is
    # looked for again in every partition.
    batch = [ids["on time"], ids["3 days slow"], ids["no time"], unknown]
    rows = operations._start_batch([(op_id, "w1", "m1") for op_id in batch])
    assert [row is not None and str(row["id"]) for row in rows] == [*batch[:3], False]
    assert [(ids_, b is operations.EVERY_PARTITION) for ids_, b in statements] == [(batch, False), ([unknown], True)]
    # A batch whose ids' times all lie days ahead of its rows' weeks finds them in the second statement.
    statements.clear()
    batch = [ids["10 days fast"], uuid7_at(int(time.time() * 1000) + 9 * DAY_MS)]
    rows = operations._start_batch([(op_id, "w1", "m1") for op_id in batch])
    assert [row is not None and str(row["id"]) for row in rows] == [ids["10 days fast"], False]
    assert [(ids_, b is operations.EVERY_PARTITION) for ids_, b in statements] == [(batch, False), (batch, True)]

    batch = [*ids.values(), unknown]
    attempts = [(op_id, operations._attempt_json(op_id, _outcome("failed"))) for op_id in batch]
    finished = operations._finish_batch(attempts)
    assert finished == [True] * len(ids) + [False]
    # Every operation is final now: a batch of their duplicates starts none, bounded or not.
    statements.clear()
    assert operations._start_batch([(op_id, "w2", "m2") for op_id in batch]) == [None] * len(batch)
    assert [b is operations.EVERY_PARTITION for _, b in statements] == [False, True]


def test_intake_makes_ids_whose_time_is_when_the_row_was_enqueued(clean_queues, db_conn, user_id, wallet):
    op_id = actors.request_sync(user_id, wallet, [1])
    assert uuid.UUID(op_id).version == 7
    enqueued_at = db_conn.execute("SELECT enqueued_at FROM sync_operations WHERE id = %s", (op_id,)).fetchone()
    lo, hi = map(dt.datetime.fromisoformat, operations.id_time_bound([op_id]))
    assert lo + operations.ID_TIME_MARGIN <= enqueued_at["enqueued_at"] < hi
    assert actors.get_sync(op_id)["status"] == "queued"
    # Final, so no later test's reconciler pass (this worker's database) finds it stranded.
    assert operations.fail_operation(op_id, error_code="expired", error_message="test over") is not None


def test_an_id_in_upper_case_is_started_once(db_conn, user_id):
    """The bounded statement finds it; its row must not be taken for a missed one and started again."""
    op_id = uuid7_strings(1)[0]
    _insert(user_id, [op_id])
    assert operations.start_attempt(op_id.upper(), worker_id="w1", message_id="m1")["attempts"] == 1
    assert db_conn.execute("SELECT attempts FROM sync_operations WHERE id = %s", (op_id,)).fetchone()["attempts"] == 1
    assert operations.finish_attempt(op_id.upper(), _outcome("succeeded"))  # final: no reconciler finds it
