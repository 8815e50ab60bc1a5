import datetime as dt
from decimal import Decimal

from chaindata.base import NATIVE_TOKEN, Price, TokenBalance
from chaindata.portfolio import human_balance, price_chain

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_human_balance_is_exact():
    assert human_balance(1, 18) == Decimal("0.000000000000000001")
    # Every one of the 78 digits of the largest uint256 is kept (the default context keeps 28).
    assert str(human_balance(2**256 - 1, 18)) == str(2**256 - 1)[:-18] + "." + str(2**256 - 1)[-18:]
    assert human_balance(123456789, 0) == 123456789


def test_pricing_keeps_unpriced_tokens_and_drops_nothing_of_value():
    usdc, dust, meme = "0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40
    balances = [TokenBalance(1, NATIVE_TOKEN, "ETH", "Ether", 18, 15 * 10**17),
                TokenBalance(1, usdc, "USDC", "USD Coin", 6, 2_500_000),
                TokenBalance(1, dust, "DUST", "Dust", 18, 1),
                TokenBalance(1, meme, "MEME", "Meme", 18, 10**18),
                TokenBalance(1, "0x" + "4" * 40, "ZERO", "Zero", 18, 0)]
    prices = {NATIVE_TOKEN: Price(Decimal("3000.10"), "test", NOW), usdc: Price(Decimal("0.9999"), "test", NOW),
              dust: Price(Decimal("0.001"), "test", NOW)}

    p = price_chain(1, balances, prices)

    by_symbol = {h["symbol"]: h for h in p.holdings}
    assert set(by_symbol) == {"ETH", "USDC", "DUST", "MEME"}  # zero balances are not holdings
    assert by_symbol["ETH"]["value_usd"] == Decimal("4500.150")
    assert by_symbol["USDC"]["value_usd"] == Decimal("2.49975")
    assert by_symbol["DUST"]["value_usd"] == Decimal("1E-21")  # worth less than a cent: still kept
    assert by_symbol["MEME"]["price_usd"] is None and by_symbol["MEME"]["value_usd"] is None
    assert p.unpriced == 1
    assert p.value_usd == Decimal("4502.649750000000000000001")


def test_values_of_huge_balances_are_exact():
    token = "0x" + "5" * 40
    raw = 123456789012345678901234567890123456789
    p = price_chain(1, [TokenBalance(1, token, "BIG", "Big", 18, raw)],
                    {token: Price(Decimal("1.2345"), "test", NOW)})
    assert p.holdings[0]["balance"] == Decimal("123456789012345678901.234567890123456789")
    assert p.holdings[0]["value_usd"] == Decimal("152407406035740740603.5740740603574074060205")
