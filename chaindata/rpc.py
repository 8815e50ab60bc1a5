"""Balances read straight from each chain's JSON-RPC node (``SYNC_PROVIDER=rpc``).

A node cannot list the tokens a wallet holds, so the ERC-20s read are the
configured ones (``RPC_TOKENS``).  A fetch is one HTTP request carrying a
JSON-RPC batch of ``eth_getBalance`` and of ``balanceOf(wallet)`` for each
token, plus, the first time only, ``eth_chainId`` (to check the endpoint
serves the chain it is configured for) and ``symbol()``, ``decimals()`` and
``name()`` of every token not seen yet; those never change, so they are
cached for the life of the provider.  (A batch of over 100 calls is split
into requests of 100, a limit many public endpoints enforce.)

Choices worth knowing:

* A configured token whose ``balanceOf`` fails or returns no uint256 (a
  revert, an address without code) fails the whole chain, permanently: a
  wrong address in the configuration should be seen, not hidden as "holds none".
* Unreadable metadata does not: a token without ``symbol()`` gets ``""``,
  one without a (non-empty) ``name()`` gets its symbol, and one without
  ``decimals()`` (optional in ERC-20) gets 0, meaning the balance is counted
  in base units.  A warning names the token once.
* ``symbol()`` and ``name()`` may return ``string`` or, as in early tokens
  such as MKR, ``bytes32``.  Their text is cleaned of control characters and
  cut to 32 and 64 characters, since any contract can return anything.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from chaindata.base import PermanentProviderError, ProviderError, TokenBalance, TransientProviderError
from chaindata.chains import native_balance
from chaindata.budget import ProviderBudget
from chaindata.jsonrpc import JsonRpcClient, parse_quantity
from chaindata.retrying import RetryPolicy

_log = logging.getLogger(__name__)

# 4-byte selectors of the ERC-20 functions read here (first bytes of the keccak-256 of their signature).
_BALANCE_OF = "0x70a08231"  # balanceOf(address)
_SYMBOL = "0x95d89b41"  # symbol()
_DECIMALS = "0x313ce567"  # decimals()
_NAME = "0x06fdde03"  # name()

_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_HEX_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
MAX_SYMBOL_LEN = 32
MAX_NAME_LEN = 64
_WORD = 32  # bytes in an ABI word


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """What a token says of itself; it never changes, so providers cache it."""

    symbol: str
    name: str
    decimals: int


class RpcProvider:
    """``BalanceProvider`` reading native and ERC-20 balances from JSON-RPC nodes.

    :param urls: the JSON-RPC endpoint of each supported chain id; a chain absent here is unsupported.
    :param tokens: the ERC-20 contracts (0x addresses) to read on each chain; none by default for a chain absent here.
    :param timeout_s: timeout, in seconds, of every HTTP request.
    :param budget: the provider's rate budget shared by all workers (None: none).
    :param retry: how requests are retried within an attempt (see :mod:`chaindata.retrying`).

    Safe to share between threads.  Call :meth:`close` to release its connections.
    """

    name = "rpc"

    def __init__(self, urls: Mapping[int, str], tokens: Mapping[int, Sequence[str]], timeout_s: float, *,
                 budget: ProviderBudget | None = None, retry: RetryPolicy = RetryPolicy()):
        self._http = httpx.Client(timeout=timeout_s)
        self._clients = {
            chain_id: JsonRpcClient(self._http, url, timeout_s=timeout_s, where=f"chain {chain_id}",
                                    peer="the rpc provider", budget=budget, retry=retry)
            for chain_id, url in urls.items()
        }
        self._tokens: dict[int, tuple[str, ...]] = {}
        for chain_id, addresses in tokens.items():
            lowered = tuple(dict.fromkeys(a.lower() for a in addresses))  # a token listed twice is read once
            for address in lowered:
                if not _ADDRESS.fullmatch(address):
                    raise ValueError(f"chain {chain_id}: token {address!r} is not a 0x-prefixed 20-byte address")
            self._tokens[chain_id] = lowered
        self._lock = threading.Lock()  # guards the two caches below
        self._info: dict[tuple[int, str], TokenInfo] = {}
        self._verified_chains: set[int] = set()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def fetch_balances(self, chain_id: int, wallet: str) -> list[TokenBalance]:
        """Every non-zero balance of ``wallet`` on ``chain_id``: native coin first, then tokens in configured order."""
        client = self._clients.get(chain_id)
        if client is None:
            raise PermanentProviderError("unsupported_chain", f"chain {chain_id}: no rpc endpoint is configured")
        wallet = check_wallet(chain_id, wallet)
        tokens = self._tokens.get(chain_id, ())
        with self._lock:
            verify = chain_id not in self._verified_chains
            unseen = [t for t in tokens if (chain_id, t) not in self._info]

        calls: list[tuple[str, list[Any]]] = [("eth_chainId", [])] if verify else []
        calls.append(("eth_getBalance", [wallet, "latest"]))
        calls += [_eth_call(token, _BALANCE_OF + _address_word(wallet)) for token in tokens]
        calls += [_eth_call(token, selector) for token in unseen for selector in (_SYMBOL, _DECIMALS, _NAME)]
        outcomes = client.batch(calls)
        # One call failing for a passing reason makes the whole answer worth asking again.
        for outcome in outcomes:
            if isinstance(outcome, TransientProviderError):
                raise outcome
        answers = iter(outcomes)

        if verify:
            self._check_chain_id(chain_id, next(answers))
        native = _required(chain_id, next(answers), "eth_getBalance", parse_quantity)
        raw_balances = [_required(chain_id, next(answers), f"balanceOf() of token {token}", decode_uint256)
                        for token in tokens]
        learned = {token: _token_info(chain_id, token, next(answers), next(answers), next(answers))
                   for token in unseen}
        with self._lock:
            for token, info in learned.items():
                self._info.setdefault((chain_id, token), info)
            infos = [self._info[(chain_id, token)] for token in tokens]

        holdings = [native_balance(chain_id, native)] if native else []
        holdings += [
            TokenBalance(chain_id=chain_id, token_address=token, symbol=info.symbol, name=info.name,
                         decimals=info.decimals, raw_balance=raw)
            for token, info, raw in zip(tokens, infos, raw_balances)
            if raw
        ]
        return holdings

    def _check_chain_id(self, chain_id: int, outcome: Any) -> None:
        served = _required(chain_id, outcome, "eth_chainId", parse_quantity)
        if served != chain_id:
            raise PermanentProviderError("provider_misconfigured",
                                         f"chain {chain_id}: the rpc endpoint configured for it serves chain {served}")
        with self._lock:
            self._verified_chains.add(chain_id)


def check_wallet(chain_id: int, wallet: str) -> str:
    """``wallet`` in lower case; ``PermanentProviderError("invalid_wallet")`` if it is no 0x address."""
    lowered = wallet.lower()
    if not _ADDRESS.fullmatch(lowered):
        raise PermanentProviderError("invalid_wallet", f"chain {chain_id}: {wallet[:64]!r} is not a 0x address")
    return lowered


def decode_uint256(result: Any) -> int:
    """The uint256 an ``eth_call`` returned (its first ABI word); ``ValueError`` if it returned less."""
    data = _hex_data(result)
    if len(data) < _WORD:
        raise ValueError("no uint256 returned")
    return int.from_bytes(data[:_WORD], "big")


def decode_string(result: Any) -> str:
    """The text an ``eth_call`` returned as ABI ``string`` or NUL-padded ``bytes32``; ``ValueError`` if neither."""
    data = _hex_data(result)
    if len(data) == _WORD:
        # A dynamic string takes at least two words (offset, length), so one word is a bytes32.
        raw = data.rstrip(b"\0")
    else:
        if len(data) < 2 * _WORD:
            raise ValueError("no string returned")
        offset = int.from_bytes(data[:_WORD], "big")
        if offset > len(data) - _WORD:
            raise ValueError("string offset out of range")
        length = int.from_bytes(data[offset:offset + _WORD], "big")
        start = offset + _WORD
        if length > len(data) - start:
            raise ValueError("string length out of range")
        raw = data[start:start + length]
    return raw.decode("utf-8", errors="replace")


def clean_text(text: str, limit: int) -> str:
    """``text`` without control or format characters (NUL, which PostgreSQL refuses, among them), cut to ``limit``."""
    kept = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    return kept.strip()[:limit]


def _hex_data(result: Any) -> bytes:
    if not isinstance(result, str) or not _HEX_DATA.fullmatch(result):
        raise ValueError("not 0x-prefixed hex data")
    return bytes.fromhex(result[2:])


def _address_word(address: str) -> str:
    """``address`` as one ABI word in hex, without 0x."""
    return address[2:].rjust(2 * _WORD, "0")


def _eth_call(to: str, data: str) -> tuple[str, list[Any]]:
    return "eth_call", [{"to": to, "data": data}, "latest"]


def _required(chain_id: int, outcome: Any, what: str, parse: Callable[[Any], int]) -> int:
    """``parse(outcome)``, or the permanent error saying ``what`` failed."""
    if isinstance(outcome, ProviderError):
        raise type(outcome)(outcome.code, f"{outcome} ({what})")
    try:
        return parse(outcome)
    except ValueError:
        raise PermanentProviderError(
            "provider_bad_response", f"chain {chain_id}: {what} returned no usable value (is it the right contract?)",
        ) from None


def _token_info(chain_id: int, token: str, symbol: Any, decimals: Any, name: Any) -> TokenInfo:
    """The metadata of ``token`` from the outcomes of its three calls, each unreadable one replaced by its default."""

    def read(outcome: Any, parse: Callable[[Any], Any], what: str, default: Any) -> Any:
        try:
            if not isinstance(outcome, ProviderError):
                return parse(outcome)
        except ValueError:
            pass
        _log.warning("chain %d: token %s has no readable %s(); using %r", chain_id, token, what, default)
        return default

    def small_uint(result: Any) -> int:
        value = decode_uint256(result)
        if value > 255:  # decimals is a uint8; anything larger is junk
            raise ValueError("decimals out of range")
        return value

    symbol_text = clean_text(read(symbol, decode_string, "symbol", ""), MAX_SYMBOL_LEN)
    name_text = clean_text(read(name, decode_string, "name", ""), MAX_NAME_LEN) or symbol_text
    return TokenInfo(symbol=symbol_text, name=name_text, decimals=read(decimals, small_uint, "decimals", 0))
