import psycopg
import pytest
import redis

from actors.middleware.retries import make_retry_when
from actors.errors import SyncAttemptFailed
from storage.queries import QUERIES, load


def test_every_named_query_is_loaded():
    assert {"insert_operations", "start_attempts", "finish_attempts", "fail_operation", "get_operation",
            "get_holdings"} <= set(QUERIES)
    assert all(q.strip() and not q.rstrip().endswith(";") for q in QUERIES.values())


def test_a_query_name_may_not_repeat():
    with pytest.raises(ValueError, match="defined twice"):
        load("-- a --\nSELECT 1;\n-- a --\nSELECT 2;")


@pytest.mark.parametrize("retries, exception, expected", [
    # The actor counted the attempt in the audit trail and said whether another is due.
    (0, SyncAttemptFailed("provider_unavailable", "", retry=True), True),
    (1, SyncAttemptFailed("provider_unavailable", "", retry=True), True),
    (0, SyncAttemptFailed("unsupported_chain", "", retry=False), False),
    (0, SyncAttemptFailed("provider_unavailable", "", retry=False), False),  # its last attempt
    (10, SyncAttemptFailed("circuit_open", "", retry=True), False),  # the message's own safety cap
    # An attempt that could not run because Redis or PostgreSQL was away has its own, larger budget.
    (0, psycopg.OperationalError("server closed the connection"), True),
    (9, redis.ConnectionError("refused"), True),
    (10, redis.ConnectionError("refused"), False),
    # Anything else is a bug or bad input: never retried.
    (0, TypeError("sync_portfolio() takes 1 positional argument"), False),
    (0, ValueError("bad"), False),
])
def test_only_transient_errors_are_retried_within_their_budget(retries, exception, expected):
    assert make_retry_when(max_attempts=3, infra_max_retries=10)(retries, exception) is expected
