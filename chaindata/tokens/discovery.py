"""Which ERC-20 tokens a wallet ever received, read from the chain's ``Transfer`` logs.

Every ERC-20 transfer emits ``Transfer(address indexed from, address indexed
to, uint256 value)``, so ``eth_getLogs`` filtered on the topic of that event
and on the wallet as its second indexed argument lists every token that ever
reached the wallet (mints included, as they are transfers from 0x0).  ERC-721
transfers share the event's topic but index the token id too (four topics
instead of three); they are not ERC-20 balances and are left out.

Nodes cap what one ``eth_getLogs`` may return, each in its own words: a
block range too large, or too many results (classed by
:mod:`chaindata.node_errors`, the table every request shares, as
``logs_range_too_large``).  Such an answer splits the range and asks again: at the range the node suggests when it names one (Alchemy,
zkSync and reth do), else at its middle.  The span that worked is kept for
the next ranges of the same scan, so a long history costs a few failed
requests, not one per range.  (``max_range`` pre-splits for providers known
to cap ranges, sparing those failures altogether.)

A scan is incremental: the caller passes what was scanned before (a
:class:`Cursor`), and only blocks outside it are asked for.  The newest
``reorg_blocks`` of the previous scan are scanned again, since a chain
reorganisation may have replaced them.

Requests go through the chain's :class:`~chaindata.jsonrpc.JsonRpcClient`,
so they spend the provider's rate budget, pause on ``Retry-After`` and are
retried as every other request of the provider.  A scan respects the
attempt's deadline (:func:`chaindata.retrying.current_deadline`): past it,
or when the budget allows no request before it, no further range is asked
for and the scan ends *incomplete*, its cursor covering the blocks done, so
the next scan goes on from there rather than starting over.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from chaindata.base import PermanentProviderError, ProviderError
from chaindata.jsonrpc import JsonRpcClient, parse_quantity
from chaindata.node_errors import LogRangeTooLarge
from chaindata.retrying import NOT_RETRIED_HERE, current_deadline

#: keccak-256 of ``Transfer(address,address,uint256)``.
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")


@dataclasses.dataclass(frozen=True)
class Cursor:
    """What was scanned before for one wallet on one chain: blocks ``from_block..to_block`` and the tokens found."""

    from_block: int
    to_block: int
    tokens: frozenset[str]


@dataclasses.dataclass(frozen=True)
class Scan:
    """The outcome of :meth:`TransferLogScanner.scan`: the cursor to keep, and what it cost."""

    cursor: Cursor
    new_tokens: frozenset[str]  # found by this scan and not in the previous cursor
    ranges: tuple[tuple[int, int], ...]  # the block ranges asked for, in order (refused ones included)
    refused: int  # of which the node refused as too large
    requests: int  # JSON-RPC calls made (a call the transport sent again counts once)
    complete: bool = True  # False: the deadline (or the budget) stopped it; the cursor covers the blocks done


class TransferLogScanner:
    """Scans ``Transfer`` logs to wallets on one chain's JSON-RPC node.

    :param client: the chain's JSON-RPC client (its budget, retries and error table apply).
    :param chain_id: the chain, for messages.
    :param max_range: most blocks per ``eth_getLogs`` from the start (0: no limit, the node decides).
    :param reorg_blocks: blocks at the end of the previous scan scanned again.
    """

    def __init__(self, client: JsonRpcClient, *, chain_id: int, max_range: int = 0, reorg_blocks: int = 0):
        self._client = client
        self._where = f"chain {chain_id}"
        self._max_range = max_range
        self._reorg_blocks = reorg_blocks

    def scan(self, wallet: str, *, start_block: int, previous: Cursor | None) -> Scan:
        """Scan the blocks of ``start_block..head`` not covered by ``previous`` for transfers to ``wallet``.

        :param wallet: lower-case 0x address.
        :param start_block: the first block of the history to scan (a floor per chain).
        :param previous: the cursor of the last scan, or ``None`` for a first scan.

        Stops early, with an incomplete :class:`Scan`, at the attempt's deadline.
        """
        counter = _Counter()
        head = _block_number(self._call("eth_blockNumber", [], counter), self._where)
        older: tuple[int, int] | None = None
        if previous is None:
            forward = (start_block, head)
            found: set[str] = set()
        else:
            if start_block < previous.from_block:  # the floor was lowered since: scan the older history too
                older = (start_block, previous.from_block - 1)
            forward = (max(previous.from_block, previous.to_block + 1 - self._reorg_blocks), head)
            found = set(previous.tokens)
        known_before = frozenset(found)
        asked: list[tuple[int, int]] = []

        if older is not None and self._scan_range(wallet, *older, counter, asked, found) < older[1]:
            # Stopped inside the older history: a cursor is one span, so the older blocks are asked again
            # next time (the tokens found meanwhile are kept).
            cursor = Cursor(previous.from_block, previous.to_block, frozenset(found))
            return self._scan(cursor, known_before, asked, counter, complete=False)
        from_block = start_block if previous is None else min(start_block, previous.from_block)
        reached = self._scan_range(wallet, *forward, counter, asked, found) if forward[0] <= forward[1] else head
        # A floor above the head (a young chain) leaves nothing scanned: to_block is then from_block - 1.
        to_block = max(reached, from_block - 1, previous.to_block if previous else reached)
        return self._scan(Cursor(from_block, to_block, frozenset(found)), known_before, asked, counter,
                          complete=reached >= forward[1])

    @staticmethod
    def _scan(cursor: Cursor, known_before: frozenset[str], asked: list[tuple[int, int]], counter: _Counter, *,
              complete: bool) -> Scan:
        return Scan(cursor=cursor, new_tokens=frozenset(cursor.tokens - known_before), ranges=tuple(asked),
                    refused=counter.refused, requests=counter.requests, complete=complete)

    def _scan_range(self, wallet: str, first: int, last: int, counter: _Counter, asked: list[tuple[int, int]],
                    found: set[str]) -> int:
        """Scan ``first..last``, adding to ``found``; the last block done (``last`` unless the deadline came)."""
        wallet_topic = "0x" + wallet[2:].rjust(64, "0")
        span = self._max_range or (last - first + 1)
        start = first
        while start <= last:
            if time.monotonic() >= current_deadline():
                return start - 1
            end = min(last, start + span - 1)
            asked.append((start, end))
            try:
                logs = self._get_logs(wallet_topic, start, end, counter)
            except LogRangeTooLarge as exc:
                counter.refused += 1
                if end == start:
                    raise PermanentProviderError(
                        "discovery_range_unsplittable",
                        f"{self._where}: the node refuses the logs of block {start} alone as too many") from None
                suggested = exc.suggested_to
                # A suggestion is followed only if it is a real step forward: nodes have been seen
                # suggesting the very range they refused.
                span = suggested - start + 1 if suggested is not None and start <= suggested < end else \
                    (end - start + 2) // 2
                continue
            except ProviderError as exc:
                if exc.code in NOT_RETRIED_HERE:  # no request in time (the budget, the deadline): stop here
                    return start - 1
                raise
            found |= _token_addresses(logs, wallet_topic, self._where)
            start = end + 1
        return last

    def _get_logs(self, wallet_topic: str, first: int, last: int, counter: _Counter) -> list[Any]:
        result = self._call("eth_getLogs", [{"fromBlock": hex(first), "toBlock": hex(last),
                                             "topics": [TRANSFER_TOPIC, None, wallet_topic]}], counter)
        if not isinstance(result, list):
            raise PermanentProviderError("provider_bad_response", f"{self._where}: eth_getLogs returned no list")
        return result

    def _call(self, method: str, params: list[Any], counter: _Counter) -> Any:
        counter.requests += 1
        return self._client.call(method, params)


@dataclasses.dataclass
class _Counter:
    requests: int = 0
    refused: int = 0


def _token_addresses(logs: list[Any], wallet_topic: str, where: str) -> set[str]:
    """The contracts that emitted ERC-20 ``Transfer`` logs to the wallet; a malformed log is a bad answer."""
    found = set()
    for log in logs:
        if not isinstance(log, dict) or not isinstance(log.get("topics"), list) or \
                not isinstance(log.get("address"), str):
            raise PermanentProviderError("provider_bad_response", f"{where}: eth_getLogs returned a malformed log")
        topics = [t.lower() if isinstance(t, str) else t for t in log["topics"]]
        address = log["address"].lower()
        if log.get("removed") is True or len(topics) != 3:
            continue  # a log of a block since reorganised away; an ERC-721 transfer (the id is a topic too)
        if topics[0] != TRANSFER_TOPIC or topics[2] != wallet_topic or not _ADDRESS.fullmatch(address):
            raise PermanentProviderError("provider_bad_response",
                                         f"{where}: eth_getLogs returned a log the filter excludes")
        found.add(address)
    return found


def _block_number(value: Any, where: str) -> int:
    try:
        return parse_quantity(value)
    except ValueError:
        raise PermanentProviderError("provider_bad_response", f"{where}: eth_blockNumber returned no number") from None
