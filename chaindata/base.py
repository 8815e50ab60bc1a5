"""The two small interfaces every data source implements, and their errors.

A *balance provider* says which tokens a wallet holds on one chain, as raw
integer balances; a *price source* says what tokens are worth in USD.  The
worker combines the two (see ``chaindata.portfolio``); nothing here talks to
Redis or PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Protocol

#: The pseudo-address used for a chain's native coin (ETH, POL, ...), as most indexers do.
NATIVE_TOKEN = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"


@dataclasses.dataclass(frozen=True)
class TokenBalance:
    """One token held by a wallet on one chain.  ``raw_balance`` is the integer on chain, never a float."""

    chain_id: int
    token_address: str  # lower-case 0x address, or NATIVE_TOKEN
    symbol: str
    name: str
    decimals: int
    raw_balance: int


@dataclasses.dataclass(frozen=True)
class Price:
    """A token's USD price, with where and when it was read."""

    usd: Decimal
    source: str
    as_of: dt.datetime


class ProviderError(Exception):
    """A data source failed.

    ``code`` is a short stable identifier recorded as the audit trail's
    ``error_code``; ``transient`` says whether trying again later may help
    (timeouts, connection errors, HTTP 429 and 5xx) or not (HTTP 4xx, a
    malformed answer, an unsupported chain).
    """

    transient = False

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class TransientProviderError(ProviderError):
    transient = True


class PermanentProviderError(ProviderError):
    transient = False


class BalanceProvider(Protocol):
    #: Short name recorded with each holding, e.g. ``"simulated"``.
    name: str

    def fetch_balances(self, chain_id: int, wallet: str) -> list[TokenBalance]:
        """Every non-zero balance of ``wallet`` (lower-case 0x address) on ``chain_id``.

        Raises ``TransientProviderError`` or ``PermanentProviderError``; every
        network call made here has its own timeout.
        """
        ...


class PriceSource(Protocol):
    def get_prices(self, chain_id: int, token_addresses: list[str]) -> dict[str, Price]:
        """USD prices of the tokens it knows; unknown tokens are simply absent (never a made-up price)."""
        ...
