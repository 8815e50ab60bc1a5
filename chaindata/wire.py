"""A chain read as bytes and back, exactly: what one sync leaves in Redis for others to share
(``actors.redis_backed.shared_reads``).  Raw balances travel as decimal strings, never floats."""

from __future__ import annotations

import json

from .base import ChainRead, PermanentProviderError, ProviderError, TokenBalance, TokenError, TransientProviderError
from .tokens.candidates import Candidates


def dump_read(read: ChainRead, candidates: Candidates) -> bytes:
    """``read`` and the ``candidates`` it was made with, as JSON bytes."""
    error = candidates.error
    return json.dumps({
        "chain_id": read.chain_id,
        "block_number": read.block_number,
        "truncated": read.truncated,
        "requests": read.requests,
        "balances": [[b.token_address, b.symbol, b.name, b.decimals, str(b.raw_balance)] for b in read.balances],
        "token_errors": [[e.token_address, e.code, e.message] for e in read.token_errors],
        "candidates": {
            "addresses": list(candidates.addresses), "discovered": candidates.discovered, "new": candidates.new,
            "scanned_to_block": candidates.scanned_to_block, "requests": candidates.requests,
            "error": None if error is None else [error.code, str(error), error.transient],
        },
    }, separators=(",", ":")).encode()


def load_read(data: bytes) -> tuple[ChainRead, Candidates]:
    """What :func:`dump_read` wrote."""
    d = json.loads(data)
    chain_id = d["chain_id"]
    read = ChainRead(
        chain_id=chain_id,
        balances=[TokenBalance(chain_id, token, symbol, name, decimals, int(raw))
                  for token, symbol, name, decimals, raw in d["balances"]],
        block_number=d["block_number"],
        token_errors=[TokenError(*e) for e in d["token_errors"]],
        truncated=d["truncated"],
        requests=d["requests"],
    )
    c = d["candidates"]
    error: ProviderError | None = None
    if c["error"] is not None:
        code, message, transient = c["error"]
        error = (TransientProviderError if transient else PermanentProviderError)(code, message)
    return read, Candidates(addresses=tuple(c["addresses"]), discovered=c["discovered"], new=c["new"],
                            scanned_to_block=c["scanned_to_block"], requests=c["requests"], error=error)
