"""A sync uses the chain read it made as the provider answered it; only a read another sync made, shared
through Redis, is parsed from its JSON.  Both ways store the same holdings."""

from __future__ import annotations

import pytest

import actors
from actors.services import context, lifecycle
from chaindata import wire
from storage import operations

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


def _holdings(user_id: str, wallet: str) -> list[tuple]:
    return sorted((h["chain_id"], h["token_address"], h["raw_balance"], h["balance"], h["value_usd"])
                  for h in operations.get_holdings(user_id, wallet.lower()))


def test_a_sync_parses_only_the_reads_it_shares_from_another(user_id, wallet, monkeypatch):
    monkeypatch.setattr(context.chain_reads().shared, "window_ms", 60_000)  # the tests' settings turn sharing off
    parsed = []
    real_load = wire.load_read
    monkeypatch.setattr(wire, "load_read", lambda data: parsed.append(data) or real_load(data))

    first = actors.request_sync(user_id, wallet, [1, 10])
    lifecycle.sync_portfolio(first)
    assert parsed == []  # its own two reads, used as made
    assert not any(r["shared_read"] for r in actors.get_sync(first)["chain_results"].values())

    other = f"{user_id}-other"
    second = actors.request_sync(other, wallet, [1, 10])
    lifecycle.sync_portfolio(second)
    assert len(parsed) == 2  # the first sync's two reads, from Redis
    assert all(r["shared_read"] for r in actors.get_sync(second)["chain_results"].values())
    assert _holdings(other, wallet) == _holdings(user_id, wallet) != []
