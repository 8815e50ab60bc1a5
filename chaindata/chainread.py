"""TEMPORARY adapter: the shared ``ChainRead`` interface of issue 13 until it lands in ``chaindata.base``.

Another branch introduces ``ChainRead``, ``TokenError`` and ``BalanceProvider.read_chain`` in
``chaindata.base`` (replacing ``fetch_balances``).  Until that merge, this module defines the same
shapes and :func:`read_chain` calls ``read_chain`` where a provider has it and wraps
``fetch_balances`` where it has not.  On merge: import these names from ``chaindata.base``, call
``provider.read_chain`` directly, and delete this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from chaindata.base import BalanceProvider, TokenBalance


@dataclasses.dataclass(frozen=True)
class TokenError:
    token_address: str
    code: str
    message: str


@dataclasses.dataclass(frozen=True)
class ChainRead:
    chain_id: int
    balances: list[TokenBalance]
    block_number: int | None
    token_errors: Sequence[TokenError] = ()
    truncated: bool = False
    requests: int = 0


def read_chain(provider: BalanceProvider, chain_id: int, wallet: str) -> ChainRead:
    """``provider.read_chain(chain_id, wallet)``, or its ``fetch_balances`` wrapped in a ``ChainRead``."""
    reader = getattr(provider, "read_chain", None)
    if reader is not None:
        return reader(chain_id, wallet)
    return ChainRead(chain_id=chain_id, balances=provider.fetch_balances(chain_id, wallet), block_number=None)
