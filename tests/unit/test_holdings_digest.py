"""The digest that lets a re-sync finish a chain without sending holdings equal to the stored ones:
equal rows give one digest whatever their order, and any field finish_attempts compares changes it."""

import datetime as dt
from decimal import Decimal

import pytest

from storage.operations import holdings_digest

A, B = "0x" + "a" * 40, "0x" + "b" * 40
PRICED_AT = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.timezone.utc)


def holding(token: str = A, **changes) -> dict:
    return {"chain_id": 1, "token_address": token, "symbol": "T", "name": "Token", "decimals": 6,
            "raw_balance": 1_500_000, "balance": Decimal("1.5"), "price_usd": Decimal("2.01"),
            "value_usd": Decimal("3.015"), "price_source": "simulated", "priced_at": PRICED_AT, "listed": True,
            "possible_spam": False} | changes


def test_equal_holdings_in_any_order_have_one_digest():
    assert holdings_digest([holding(A), holding(B)], "p") == holdings_digest([holding(B), holding(A)], "p")


def test_a_missing_flag_counts_as_false_as_the_statement_stores_it():
    row = holding()
    del row["possible_spam"]
    assert holdings_digest([row], "p") == holdings_digest([holding()], "p")


@pytest.mark.parametrize("field, value", [
    ("token_address", B), ("symbol", "U"), ("name", "Other"), ("decimals", None), ("raw_balance", 1_500_001),
    ("balance", None),
    ("price_usd", None), ("price_usd", Decimal("2.02")), ("value_usd", Decimal("3.016")), ("price_source", "x"),
    ("priced_at", PRICED_AT + dt.timedelta(seconds=1)), ("listed", False), ("possible_spam", True),
])
def test_any_compared_field_changes_the_digest(field, value):
    assert holdings_digest([holding(**{field: value})], "p") != holdings_digest([holding()], "p")


def test_the_provider_the_rows_name_and_the_set_of_tokens_change_it():
    assert holdings_digest([holding()], "p") != holdings_digest([holding()], "q")
    assert holdings_digest([holding(A)], "p") != holdings_digest([holding(A), holding(B)], "p")
    assert holdings_digest([], "p") != holdings_digest([holding()], "p")


@pytest.mark.parametrize("field, one, other", [
    ("raw_balance", 5, Decimal(5)), ("symbol", None, "None"), ("decimals", 6, "6"), ("listed", False, "false"),
    ("priced_at", PRICED_AT, PRICED_AT.replace(tzinfo=None)),
])
def test_values_of_another_type_never_share_a_digest(field, one, other):
    # PostgreSQL may store two of these alike (or refuse one); equal digests must mean equal rows, never more.
    assert holdings_digest([holding(**{field: one})], "p") != holdings_digest([holding(**{field: other})], "p")


def test_a_holding_without_a_field_digests_as_its_null():
    row = holding()
    del row["price_source"]
    assert holdings_digest([row], "p") == holdings_digest([holding(price_source=None)], "p")
