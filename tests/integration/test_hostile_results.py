"""What a provider says, however hostile, reaches the audit trail cleaned; and a result PostgreSQL refuses
ends the operation with that reason, on the real storage layer (issue 14, items 3 and 4)."""

from __future__ import annotations

import dataclasses

import pytest

import actors
import actors.worker
from actors.redis_backed import events
from actors.services import context, lifecycle
from chaindata.base import PermanentProviderError, TransientProviderError

pytestmark = pytest.mark.integration

HOSTILE = "bad\x00answer\x1b[31m \ud800 " + "x" * 100_000


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


class Failing:
    """The real provider's name, and every read fails with ``error``."""

    def __init__(self, inner, error):
        self.name, self.error = inner.name, error

    def read_chain(self, chain_id, wallet, tokens=()):
        raise self.error


def _events_of(redis_client, op_id: str) -> list[str]:
    return [e["type"] for _, e in events.read(redis_client, actors.worker.broker.namespace, count=100_000)
            if e["operation_id"] == op_id]


@pytest.mark.parametrize("transient", [False, True])
def test_provider_text_with_nul_control_characters_and_no_end_is_stored_cleaned(user_id, wallet, monkeypatch,
                                                                                 transient, db_conn):
    error_type = TransientProviderError if transient else PermanentProviderError
    failing = Failing(context.provider(), error_type("provider\x00error", HOSTILE))
    monkeypatch.setattr(context, "provider", lambda: failing)
    op_id = actors.request_sync(user_id, wallet, [1])

    with pytest.raises(actors.SyncAttemptFailed):
        lifecycle.sync_portfolio(op_id)

    row = db_conn.execute("SELECT status, error_code, error_message, chain_results FROM sync_operations "
                          "WHERE id = %s", (op_id,)).fetchone()
    assert row["status"] == ("retrying" if transient else "failed")
    assert row["error_code"] == "providererror"
    assert row["error_message"].startswith("chain 1: badanswer[31m")
    assert "\x00" not in row["error_message"] and "\x1b" not in row["error_message"]
    assert len(row["error_message"]) <= 1000
    chain = row["chain_results"]["1"]
    assert chain["error_code"] == "providererror" and chain["error_message"].startswith("badanswer[31m")
    assert len(chain["error_message"]) <= 1000


def test_a_result_postgresql_cannot_hold_fails_the_operation_with_the_reason(user_id, wallet, monkeypatch,
                                                                           redis_client, db_conn):
    real_attempt = lifecycle._attempt

    def too_big(row, *, deadline):  # an int column cannot hold it
        return dataclasses.replace(real_attempt(row, deadline=deadline), holdings_count=2 ** 40)

    monkeypatch.setattr(lifecycle, "_attempt", too_big)
    op_id = actors.request_sync(user_id, wallet, [1])

    with pytest.raises(actors.SyncAttemptFailed) as caught:
        lifecycle.sync_portfolio(op_id)

    assert caught.value.retry is False
    row = db_conn.execute("SELECT status, error_code, error_message, finished_at FROM sync_operations "
                          "WHERE id = %s", (op_id,)).fetchone()
    assert row["status"] == "failed" and row["finished_at"] is not None
    assert row["error_code"] == "result_not_stored"
    assert "NumericValueOutOfRange" in row["error_message"] and "out of range" in row["error_message"]
    assert db_conn.execute("SELECT count(*) AS n FROM holdings WHERE operation_id = %s",
                           (op_id,)).fetchone()["n"] == 0
    # It ended: the wallet is free and the failure was announced.
    assert actors.request_sync(user_id, wallet, [1]) != op_id
    assert _events_of(redis_client, op_id) == ["sync.failed"]
