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


def test_a_token_neither_listed_nor_priced_is_kept_flagged_and_out_of_the_total():
    listed_unpriced, unlisted_priced, spam = "0x" + "6" * 40, "0x" + "7" * 40, "0x" + "8" * 40
    balances = [TokenBalance(1, NATIVE_TOKEN, "ETH", "Ether", 18, 10**18),
                TokenBalance(1, listed_unpriced, "LST", "Listed", 18, 10**18),
                TokenBalance(1, unlisted_priced, "PRC", "Priced", 6, 2_000_000),
                TokenBalance(1, spam, "FREE", "Claim at scam.example", 18, 10**30)]
    prices = {NATIVE_TOKEN: Price(Decimal("2"), "test", NOW), unlisted_priced: Price(Decimal("0.5"), "test", NOW)}

    p = price_chain(1, balances, prices, listed=lambda chain_id, address: (chain_id, address) == (1, listed_unpriced))

    flags = {h["symbol"]: (h["listed"], h["possible_spam"]) for h in p.holdings}
    assert flags == {"ETH": (True, False), "LST": (True, False), "PRC": (False, False), "FREE": (False, True)}
    assert {h["symbol"]: h["value_usd"] for h in p.holdings}["FREE"] is None
    assert p.value_usd == Decimal("3.0")
    assert (p.unpriced, p.possible_spam) == (2, 1)


def test_without_a_list_only_the_native_coin_is_listed():
    token = "0x" + "9" * 40
    p = price_chain(1, [TokenBalance(1, NATIVE_TOKEN, "ETH", "Ether", 18, 1), TokenBalance(1, token, "X", "X", 18, 1)],
                    {})
    assert [(h["listed"], h["possible_spam"]) for h in p.holdings] == [(True, False), (False, True)]


def test_a_token_of_unknown_decimals_is_never_valued_even_if_priced():
    token = "0x" + "a" * 40
    p = price_chain(1, [TokenBalance(1, token, "NODEC", "No decimals", None, 10**20)],
                    {token: Price(Decimal("1000"), "test", NOW)}, listed=lambda c, a: True)
    (h,) = p.holdings
    assert h["decimals"] is None and h["balance"] is None and h["value_usd"] is None
    assert h["raw_balance"] == 10**20 and h["price_usd"] == Decimal("1000")
    assert p.value_usd == 0 and p.unpriced == 1 and not h["possible_spam"]
