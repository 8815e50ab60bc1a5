"""The chains the project knows: each one's name, native coin, Multicall3 and price ids (``CHAIN_METADATA``).

:data:`DEFAULT_CHAINS` ships the chains the project supports out of the box
(the five of ``SYNC_CHAINS``' default, BNB Smart Chain, Avalanche and Anvil's
31337); ``CHAIN_METADATA`` (see :func:`parse_chain_metadata`) changes them or
adds others.  A chain known to neither is refused at start: it is never guessed
to be an Ether-like chain, since a wrong native symbol or number of decimals
would store wrong balances.  ``chaindata.chains`` reads chains from this table.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
from collections.abc import Mapping
from typing import Any

#: Where Multicall3 lives on every chain it was deployed to by its pre-signed transaction.
MULTICALL3_ADDRESS = "0xca11bde05977b3631167028862be2a173976ca11"

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_PRICE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MAX_TEXT = 64


@dataclasses.dataclass(frozen=True)
class Chain:
    """One EVM chain: its native coin (the coin ``eth_getBalance`` counts), its Multicall3 and its price ids.

    ``price_platform`` is the price API's id of the chain's token platform, and
    ``native_price_id`` its id of the native coin; ``None`` means the price API
    is not asked, so the holdings stay unpriced.
    """

    chain_id: int
    name: str
    native_symbol: str
    native_name: str
    native_decimals: int = 18
    multicall3: str = MULTICALL3_ADDRESS
    price_platform: str | None = None
    native_price_id: str | None = None


DEFAULT_CHAINS: Mapping[int, Chain] = types.MappingProxyType({
    c.chain_id: c
    for c in (
        Chain(1, "Ethereum", "ETH", "Ether", price_platform="ethereum", native_price_id="ethereum"),
        Chain(10, "OP Mainnet", "ETH", "Ether", price_platform="optimistic-ethereum", native_price_id="ethereum"),
        Chain(56, "BNB Smart Chain", "BNB", "BNB", price_platform="binance-smart-chain",
              native_price_id="binancecoin"),
        Chain(137, "Polygon", "POL", "POL", price_platform="polygon-pos", native_price_id="polygon-ecosystem-token"),
        Chain(8453, "Base", "ETH", "Ether", price_platform="base", native_price_id="ethereum"),
        Chain(42161, "Arbitrum One", "ETH", "Ether", price_platform="arbitrum-one", native_price_id="ethereum"),
        Chain(43114, "Avalanche", "AVAX", "Avalanche", price_platform="avalanche", native_price_id="avalanche-2"),
        # A local test node: nothing there has a market price.
        Chain(31337, "Anvil", "ETH", "Ether"),
    )
})


_FIELDS = {"name", "native_symbol", "native_name", "native_decimals", "multicall3", "price_platform",
           "native_price_id"}
_REQUIRED_FOR_NEW = ("name", "native_symbol", "native_name", "native_decimals")


def parse_chain_metadata(text: str, base: Mapping[int, Chain] = DEFAULT_CHAINS) -> dict[int, Chain]:
    """``base`` changed by ``text``, the JSON of ``CHAIN_METADATA``; ``ValueError`` saying what is wrong.

    ``text`` is an object keyed by chain id, e.g.
    ``{"250": {"name": "Fantom", "native_symbol": "FTM", "native_name": "Fantom", "native_decimals": 18,
    "price_platform": "fantom", "native_price_id": "fantom"}}``.  A chain of
    ``base`` takes the fields given and keeps the others; a new chain needs at
    least its name and its native coin's symbol, name and decimals.
    ``multicall3`` defaults to the canonical address; ``null`` for a price id
    means "not priced".
    """
    chains = dict(base)
    if not text.strip():
        return chains
    try:
        given = json.loads(text)
    except ValueError:
        raise ValueError("is not valid JSON") from None
    if not isinstance(given, dict):
        raise ValueError("must be a JSON object keyed by chain id")
    for key, fields in given.items():
        if not re.fullmatch(r"[1-9][0-9]{0,15}", key) or int(key) > 2**53:
            raise ValueError(f"{key[:20]!r} is not a chain id")
        chain_id = int(key)
        if not isinstance(fields, dict):
            raise ValueError(f"chain {chain_id}: expected an object of fields")
        unknown = sorted(set(fields) - _FIELDS)
        if unknown:
            raise ValueError(f"chain {chain_id}: unknown field(s) {', '.join(unknown)[:100]} "
                             f"(known: {', '.join(sorted(_FIELDS))})")
        known = chains.get(chain_id)
        missing = [f for f in _REQUIRED_FOR_NEW if f not in fields] if known is None else []
        if missing:
            raise ValueError(f"chain {chain_id} is not a default chain, so it needs {', '.join(missing)}")
        values = dataclasses.asdict(known) if known is not None else {"chain_id": chain_id}
        values.update({name: _checked(chain_id, name, value) for name, value in fields.items()})
        chains[chain_id] = Chain(**values)
    return chains


def _checked(chain_id: int, field: str, value: Any) -> Any:
    """``value`` of ``field``, checked (and addresses lower-cased); ``ValueError`` if it is unfit."""
    where = f"chain {chain_id}: {field}"
    if field == "native_decimals":
        if type(value) is not int or not 0 <= value <= 255:
            raise ValueError(f"{where} must be an integer from 0 to 255")
        return value
    if field == "multicall3":
        if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
            raise ValueError(f"{where} must be a 0x-prefixed 20-byte address")
        return value.lower()
    if field in ("price_platform", "native_price_id"):
        if value is not None and not (isinstance(value, str) and _PRICE_ID.fullmatch(value)):
            raise ValueError(f"{where} must be null or a price API id (lower-case letters, digits, '.', '_', '-')")
        return value
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT or not value.isprintable():
        raise ValueError(f"{where} must be 1 to {_MAX_TEXT} printable characters")
    return value.strip()
