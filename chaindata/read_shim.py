"""TEMPORARY adapter, until the multicall branch's ``read_chain`` lands: delete this module at the merge.

It gives today's providers the shared interface of issue 13 (``read_chain(chain_id, wallet, tokens)``
returning a ``ChainRead``), so token discovery can pass its candidate tokens.  ``RpcProvider`` reads a
fixed ``RPC_TOKENS``, so the adapter reads the candidates with a short-lived ``RpcProvider`` for them.
Today's ``RpcProvider`` fails the whole chain on one token without code (multicall's read isolates such a
token), so the adapter first drops candidates without code: a listed mainnet token is absent from a test node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import httpx

from chaindata.base import BalanceProvider, ProviderError, TokenBalance
from chaindata.jsonrpc import JsonRpcClient
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
        with_code = _with_code(rpc_urls[chain_id], chain_id, list(tokens), timeout_s)
        reader = RpcProvider({chain_id: rpc_urls[chain_id]}, {chain_id: with_code}, timeout_s=timeout_s)
        try:
            return ChainRead(chain_id, reader.fetch_balances(chain_id, wallet))
        finally:
            reader.close()
    return ChainRead(chain_id, provider.fetch_balances(chain_id, wallet))


def _with_code(url: str, chain_id: int, tokens: list[str], timeout_s: float) -> list[str]:
    if not tokens:
        return []
    with httpx.Client(timeout=timeout_s) as http:
        client = JsonRpcClient(http, url, timeout_s=timeout_s, where=f"chain {chain_id}", peer="the rpc provider")
        codes = client.batch([("eth_getCode", [token, "latest"]) for token in tokens])
    for code in codes:
        if isinstance(code, ProviderError):
            raise code
    return [token for token, code in zip(tokens, codes) if isinstance(code, str) and code not in ("0x", "")]
