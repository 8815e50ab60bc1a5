"""The two small interfaces every data source implements, and their errors.

A *balance provider* says which tokens a wallet holds on one chain, as raw
integer balances; a *price source* says what tokens are worth in USD.  The
worker combines the two (see ``chaindata.portfolio``); nothing here talks to
Redis or PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol

from settings.addresses import InvalidAddress, normalize_address

#: The pseudo-address used for a chain's native coin (ETH, POL, ...), as most indexers do.
NATIVE_TOKEN = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"


@dataclasses.dataclass(frozen=True)
class TokenBalance:
    """One token held by a wallet on one chain.  ``raw_balance`` is the integer on chain, never a float."""

    chain_id: int
    token_address: str  # lower-case 0x address, or NATIVE_TOKEN
    symbol: str
    name: str
    decimals: int | None  # None: decimals() could not be read, so the balance is never valued
    raw_balance: int  # exact, 0 <= raw_balance < 2**256


@dataclasses.dataclass(frozen=True)
class TokenError:
    """A token whose read went wrong on its own, while the chain's read succeeded.

    A token whose balance could not be read has no :class:`TokenBalance`; one
    whose balance was read but whose metadata was not (no ``decimals()``, say)
    has both, the balance and this error saying what is missing.
    """

    token_address: str
    code: str  # short and stable, e.g. "reverted", "bad_answer", "no_decimals"
    message: str  # already sanitised: no control characters, bounded length, no secrets


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """What a token says of itself.  ``problems`` are ``(code, message)`` of what it could not say."""

    symbol: str
    name: str
    decimals: int | None
    problems: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class ChainRead:
    """Everything one read of one wallet on one chain found."""

    chain_id: int
    balances: list[TokenBalance]
    block_number: int | None  # every balance was read at this block (None: the source has no block)
    token_errors: Sequence[TokenError] = ()  # tokens whose read failed alone; the chain still succeeded
    truncated: bool = False  # the source stopped before the end (e.g. a page limit)
    requests: int = 0  # HTTP requests this read made (for the audit trail and benchmarks)


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


def check_wallet(chain_id: int, wallet: str) -> str:
    """``wallet`` in lower case; ``PermanentProviderError("invalid_wallet")`` if it is no address (EIP-55 checked)."""
    try:
        return normalize_address(wallet)
    except InvalidAddress as exc:
        raise PermanentProviderError("invalid_wallet", f"chain {chain_id}: {wallet[:64]!r} {exc}") from None


class BalanceProvider(Protocol):
    #: Short name recorded with each holding, e.g. ``"simulated"``.
    name: str

    def read_chain(self, chain_id: int, wallet: str, tokens: Sequence[str] = ()) -> ChainRead:
        """Every non-zero balance of ``wallet`` (lower-case 0x address) on ``chain_id``.

        ``tokens`` are candidate token addresses (lower case) to read besides
        those the provider finds or is configured with.  A token that fails
        alone is a ``TokenError`` of the result; a failure of the whole chain
        raises ``TransientProviderError`` or ``PermanentProviderError``.
        Every network call made here has its own timeout.
        """
        ...


class PriceSource(Protocol):
    def get_prices(self, chain_id: int, token_addresses: list[str]) -> dict[str, Price]:
        """USD prices of the tokens it knows; unknown tokens are simply absent (never a made-up price)."""
        ...
