"""What the data sources know about each EVM chain: the name of the chain and of its native coin.

Only a handful of chains are listed; any other chain id still works, as an
Ether-like chain named ``Chain <id>`` (most EVM chains, L2s above all, use
ETH with 18 decimals).
"""

from __future__ import annotations

import dataclasses

from chaindata.base import NATIVE_TOKEN, TokenBalance


@dataclasses.dataclass(frozen=True)
class Chain:
    """One EVM chain and its native coin (the coin ``eth_getBalance`` counts)."""

    chain_id: int
    name: str
    native_symbol: str
    native_name: str
    native_decimals: int = 18


_KNOWN: dict[int, Chain] = {
    c.chain_id: c
    for c in (
        Chain(1, "Ethereum", "ETH", "Ether"),
        Chain(10, "OP Mainnet", "ETH", "Ether"),
        Chain(56, "BNB Smart Chain", "BNB", "BNB"),
        Chain(137, "Polygon", "POL", "POL"),
        Chain(8453, "Base", "ETH", "Ether"),
        Chain(42161, "Arbitrum One", "ETH", "Ether"),
        Chain(43114, "Avalanche", "AVAX", "Avalanche"),
        Chain(31337, "Anvil", "ETH", "Ether"),
    )
}


def get_chain(chain_id: int) -> Chain:
    """The chain ``chain_id``; an unknown id gives ``Chain <id>`` with ETH/Ether/18 as its native coin."""
    known = _KNOWN.get(chain_id)
    return known if known is not None else Chain(chain_id, f"Chain {chain_id}", "ETH", "Ether")


def native_balance(chain_id: int, raw_balance: int) -> TokenBalance:
    """The holding of ``raw_balance`` base units (wei) of the native coin of ``chain_id``."""
    chain = get_chain(chain_id)
    return TokenBalance(chain_id=chain_id, token_address=NATIVE_TOKEN, symbol=chain.native_symbol,
                        name=chain.native_name, decimals=chain.native_decimals, raw_balance=raw_balance)
