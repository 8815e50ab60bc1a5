"""Each EVM chain as the data sources see it: looked up in the configured table (:mod:`settings.chains`),
never guessed; its native coin as a holding.
"""

from __future__ import annotations

from collections.abc import Mapping

from chaindata.base import NATIVE_TOKEN, PermanentProviderError, TokenBalance
from settings.chains import DEFAULT_CHAINS, Chain


class UnknownChainError(PermanentProviderError):
    """A chain id with no metadata: nothing is read from it (code ``unsupported_chain``)."""

    def __init__(self, chain_id: int):
        super().__init__("unsupported_chain",
                         f"chain {chain_id}: no metadata is known for it (add it to CHAIN_METADATA)")


def get_chain(chain_id: int, chains: Mapping[int, Chain] = DEFAULT_CHAINS) -> Chain:
    """The chain ``chain_id`` of ``chains``; :class:`UnknownChainError` if it is not there."""
    chain = chains.get(chain_id)
    if chain is None:
        raise UnknownChainError(chain_id)
    return chain


def chain_label(chain_id: int, chains: Mapping[int, Chain] = DEFAULT_CHAINS) -> str:
    """A name to show for ``chain_id``, even for a chain no longer configured (``"Chain <id>"``)."""
    chain = chains.get(chain_id)
    return chain.name if chain is not None else f"Chain {chain_id}"


def native_balance(chain: Chain, raw_balance: int) -> TokenBalance:
    """The holding of ``raw_balance`` base units (wei) of the native coin of ``chain``."""
    return TokenBalance(chain_id=chain.chain_id, token_address=NATIVE_TOKEN, symbol=chain.native_symbol,
                        name=chain.native_name, decimals=chain.native_decimals, raw_balance=raw_balance)
