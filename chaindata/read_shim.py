"""TEMPORARY adapter, until the multicall branch's ``read_chain`` lands: delete this module at the merge.

It gives today's providers the shared interface of issue 13 (``read_chain(chain_id, wallet, tokens)``
returning a ``ChainRead``), so token discovery can pass its candidate tokens.  ``RpcProvider`` reads a
fixed ``RPC_TOKENS``, so the adapter reads the candidates with a short-lived ``RpcProvider`` for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from chaindata.base import BalanceProvider, TokenBalance
from chaindata.rpc import RpcProvider


@dataclasses.dataclass(frozen=True)
class ChainRead:
    """The shape of ``chaindata.base.ChainRead`` in the multicall branch (the fields this branch uses)."""

    chain_id: int
    balances: list[TokenBalance]
    block_number: int | None = None


def read_chain(provider: BalanceProvider, chain_id: int, wallet: str, tokens: Sequence[str], *,
               rpc_urls: Mapping[int, str], timeout_s: float) -> ChainRead:
    """``provider.read_chain(chain_id, wallet, tokens)``, or its equivalent with today's ``fetch_balances``."""
    if hasattr(provider, "read_chain"):
        return provider.read_chain(chain_id, wallet, tokens)
    if isinstance(provider, RpcProvider):
        reader = RpcProvider({chain_id: rpc_urls[chain_id]}, {chain_id: tokens}, timeout_s=timeout_s)
        try:
            return ChainRead(chain_id, reader.fetch_balances(chain_id, wallet))
        finally:
            reader.close()
    return ChainRead(chain_id, provider.fetch_balances(chain_id, wallet))
