"""Turn raw balances and prices into priced holdings: exact Decimal arithmetic, no I/O.

Two rules keep a total honest:

* a token whose ``decimals()`` could not be read (``decimals`` is ``None``) has no balance in
  units and is never valued, whatever its price: a guess of the decimals would be off by powers of ten;
* a token neither named by a token list nor priced is kept, flagged ``possible_spam`` (airdropped
  scam tokens look exactly like this), and, having no value, never counts in a total.

Python's default decimal context keeps 28 significant digits, and a uint256 balance has up to 78:
every operation here runs in :data:`EXACT`, whose precision is ample for products and sums of such
numbers and which raises rather than round, so a stored value is never silently cut.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow

from .base import NATIVE_TOKEN, Price, TokenBalance


#: Exact arithmetic for balances and values (raises decimal.Inexact instead of rounding).
EXACT = Context(prec=1000, traps=[Inexact, InvalidOperation, Overflow])


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for value in values:
        total = EXACT.add(total, value)
    return total


@dataclasses.dataclass(frozen=True)
class ChainPortfolio:
    """One chain's holdings, ready to store, and their summary."""

    chain_id: int
    holdings: list[dict]
    value_usd: Decimal
    unpriced: int  # holdings without a value (no price, or unknown decimals)
    possible_spam: int = 0  # holdings neither listed nor priced


def human_balance(raw_balance: int, decimals: int) -> Decimal:
    """``raw_balance / 10**decimals``, exactly."""
    return EXACT.scaleb(Decimal(raw_balance), -decimals)


def price_chain(chain_id: int, balances: Iterable[TokenBalance], prices: Mapping[str, Price],
                listed: Callable[[int, str], bool] | None = None) -> ChainPortfolio:
    """Price ``balances`` with ``prices``.  A token without a price keeps a null price and value
    and is counted as unpriced; it is never given a fallback price, nor dropped.  Nor is a token of
    unknown decimals valued: its integer balance is kept, its balance in tokens is null.

    :param listed: whether a token list names ``(chain_id, token_address)``; ``None``: no list.
        The native coin is always listed.
    """
    holdings = []
    total = Decimal(0)
    unpriced = 0
    spam = 0
    for b in balances:
        if b.raw_balance <= 0:
            continue
        balance = None if b.decimals is None else human_balance(b.raw_balance, b.decimals)
        price = prices.get(b.token_address)
        value = None if price is None or balance is None else EXACT.multiply(balance, price.usd)
        is_listed = b.token_address == NATIVE_TOKEN or (listed is not None and listed(chain_id, b.token_address))
        possible_spam = not is_listed and price is None
        if value is None:
            unpriced += 1
        else:
            total = EXACT.add(total, value)
        spam += possible_spam
        holdings.append({
            "chain_id": chain_id,
            "token_address": b.token_address,
            "symbol": b.symbol,
            "name": b.name,
            "decimals": b.decimals,
            "raw_balance": b.raw_balance,
            "balance": balance,
            "price_usd": None if price is None else price.usd,
            "value_usd": value,
            "price_source": None if price is None else price.source,
            "priced_at": None if price is None else price.as_of,
            "listed": is_listed,
            "possible_spam": possible_spam,
        })
    return ChainPortfolio(chain_id, holdings, total, unpriced, spam)
