"""A partial outcome on the real PostgreSQL and Redis: final, stored chains kept, the scheduler told it
was a failure, no cooldown started."""

from __future__ import annotations

import pytest

import actors
from actors.services import context, lifecycle
from chaindata.base import PermanentProviderError, TransientProviderError
from chaindata.retrying import RetryPolicy
from chaindata.rpc import RpcProvider
from harness.fake_http import FakeHttpServer
from storage.pool import get_pool

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


class OneChainFails:
    """Wraps the real provider; one chain fails with ``error`` every time."""

    def __init__(self, inner, chain_id, error):
        self.inner, self.chain_id, self.error, self.name = inner, chain_id, error, inner.name

    def read_chain(self, chain_id, wallet, tokens=()):
        if chain_id == self.chain_id:
            raise self.error
        return self.inner.read_chain(chain_id, wallet, tokens)


def tracked(user_id: str, wallet: str) -> dict:
    with get_pool().connection() as conn:
        return conn.execute("SELECT last_success_at, last_failure_at, consecutive_failures FROM tracked_wallets "
                            "WHERE user_id = %s AND wallet_address = %s", (user_id, wallet.lower())).fetchone()


def test_a_transient_chain_still_failing_after_the_last_attempt_ends_partial(user_id, wallet, monkeypatch):
    down = TransientProviderError("provider_unavailable", "chain 10: down")
    failing = OneChainFails(context.provider(), 10, down)
    monkeypatch.setattr(context, "provider", lambda: failing)
    op_id = actors.request_sync(user_id, wallet, [1, 10])

    # Attempts before the last are retried (Dramatiq's Retries would bring the message back) ...
    for _ in range(context.cfg().sync.max_attempts - 1):
        with pytest.raises(actors.SyncAttemptFailed) as caught:
            lifecycle.sync_portfolio(op_id)
        assert caught.value.retry is True and actors.get_sync(op_id)["status"] == "retrying"
    # ... the last one, with chain 1 stored and chain 10 still down, ends the operation partial.
    lifecycle.sync_portfolio(op_id)

    op = actors.get_sync(op_id)
    assert op["status"] == "partial" and op["finished_at"] is not None
    assert op["attempts"] == context.cfg().sync.max_attempts
    assert op["chain_results"]["1"]["status"] == "ok"
    assert op["chain_results"]["10"] | {"error_message": ""} == {
        "status": "error", "error_code": "provider_unavailable", "transient": True, "error_message": ""}

    health = tracked(user_id, wallet)
    assert health["consecutive_failures"] == 1 and health["last_failure_at"] is not None
    assert health["last_success_at"] is None
    # No cooldown: the same wallet may be asked for again at once, without force.
    assert actors.request_sync(user_id, wallet, [1, 10]) != op_id


def test_every_chain_failing_for_good_is_failed_not_partial(user_id, wallet, monkeypatch):
    rejected = PermanentProviderError("provider_rejected", "chain 1: HTTP 400")
    failing = OneChainFails(context.provider(), 1, rejected)
    monkeypatch.setattr(context, "provider", lambda: failing)
    op_id = actors.request_sync(user_id, wallet, [1])
    with pytest.raises(actors.SyncAttemptFailed) as caught:
        lifecycle.sync_portfolio(op_id)
    assert caught.value.retry is False and actors.get_sync(op_id)["status"] == "failed"



def test_one_attempt_sends_each_request_at_most_sync_read_tries_times(user_id, wallet, monkeypatch):
    # Retries live in one layer, the transport: a node down for good gets SYNC_READ_TRIES sends of the
    # chain read's first request per attempt, not SYNC_READ_TRIES of them per try of the whole read.
    tries = context.cfg().sync.read_tries
    assert tries > 1
    with FakeHttpServer(lambda request: (503, "{}")) as node:
        provider = RpcProvider({1: node.url}, {}, timeout_s=2,
                               retry=RetryPolicy(tries=tries, base_s=0.001, cap_s=0.005))
        try:
            monkeypatch.setattr(context, "provider", lambda: provider)
            op_id = actors.request_sync(user_id, wallet, [1])
            with pytest.raises(actors.SyncAttemptFailed):
                lifecycle.sync_portfolio(op_id)
        finally:
            provider.close()
    assert len(node.requests) == tries
    assert actors.get_sync(op_id)["chain_results"]["1"]["error_code"] == "provider_unavailable"
