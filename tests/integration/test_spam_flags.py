"""The spam and unknown-token rules, as stored: flags and null decimals in PostgreSQL, totals without them."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

import actors
from actors.services import lifecycle
from chaindata.base import NATIVE_TOKEN, Price, TokenBalance
from chaindata.portfolio import exact_sum, price_chain
from storage import operations

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


def test_flags_and_unknown_decimals_are_stored_with_the_holdings(user_id, wallet):
    wallet = wallet.lower()
    listed, spam, nodec = "0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40
    portfolio = price_chain(1, [
        TokenBalance(1, NATIVE_TOKEN, "ETH", "Ether", 18, 10**18),
        TokenBalance(1, listed, "USDC", "USD Coin", 6, 1_500_000),
        TokenBalance(1, spam, "AIRDROP", "Visit scam.example", 18, 10**24),
        TokenBalance(1, nodec, "NODEC", "No decimals", None, 42),
    ], {NATIVE_TOKEN: Price(Decimal("3000"), "test", NOW), listed: Price(Decimal("1"), "test", NOW),
        nodec: Price(Decimal("5"), "test", NOW)}, listed=lambda c, a: a == listed)
    op_id = str(uuid.uuid4())
    operations.insert_operations([operations.NewOperation(op_id, user_id, wallet, (1,), "normal", "api")],
                                 provider="test")
    assert operations.start_attempt(op_id, worker_id="test", message_id=None)
    assert operations.finish_attempt(op_id, operations.AttemptOutcome(
        status="succeeded", holdings=portfolio.holdings, synced_chains=[1], chain_results={},
        holdings_count=len(portfolio.holdings), total_value_usd=portfolio.value_usd,
        unpriced_count=portfolio.unpriced, as_of=NOW, provider="test"))

    stored = {h["symbol"]: h for h in operations.get_holdings(user_id, wallet)}
    assert {s: (h["listed"], h["possible_spam"]) for s, h in stored.items()} == {
        "ETH": (True, False), "USDC": (True, False), "AIRDROP": (False, True), "NODEC": (False, False)}
    assert stored["NODEC"]["decimals"] is None and stored["NODEC"]["balance"] is None
    assert stored["NODEC"]["value_usd"] is None and int(stored["NODEC"]["raw_balance"]) == 42
    assert stored["AIRDROP"]["value_usd"] is None
    assert actors.get_sync(op_id)["total_value_usd"] == Decimal("3001.5")


def test_a_sync_counts_possible_spam_per_chain(user_id, wallet):
    op_id = actors.request_sync(user_id, wallet, [1])
    lifecycle.sync_portfolio(op_id)
    op = actors.get_sync(op_id)
    held = operations.get_holdings(user_id, wallet.lower())
    assert op["status"] == "succeeded"
    # The simulated tokens are on no list: the ones without a price are possible spam, the others not.
    assert op["chain_results"]["1"]["possible_spam"] == sum(h["possible_spam"] for h in held)
    assert all(h["possible_spam"] == (h["price_usd"] is None and h["token_address"] != NATIVE_TOKEN) for h in held)
    assert op["total_value_usd"] == exact_sum(h["value_usd"] for h in held if h["value_usd"] is not None)
