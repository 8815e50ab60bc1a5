"""Which ERC-20 tokens a wallet ever received, read from the chain's ``Transfer`` logs.

Every ERC-20 transfer emits ``Transfer(address indexed from, address indexed
to, uint256 value)``, so ``eth_getLogs`` filtered on the topic of that event
and on the wallet as its second indexed argument lists every token that ever
reached the wallet (mints included, as they are transfers from 0x0).  ERC-721
transfers share the event's topic but index the token id too (four topics
instead of three); they are not ERC-20 balances and are left out.

Nodes cap what one ``eth_getLogs`` may return, each in its own words: a
block range too large, or too many results.  Such an answer splits the range
and asks again: at the range the node suggests when it names one (Alchemy,
zkSync and reth do), else at its middle.  The span that worked is kept for
the next ranges of the same scan, so a long history costs a few failed
requests, not one per range.  (``max_range`` pre-splits for providers known
to cap ranges, sparing those failures altogether.)

A scan is incremental: the caller passes what was scanned before (a
:class:`Cursor`), and only blocks outside it are asked for.  The newest
``reorg_blocks`` of the previous scan are scanned again, since a chain
reorganisation may have replaced them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import httpx

from chaindata.base import PermanentProviderError, TransientProviderError
from chaindata.jsonrpc import parse_quantity, request_json

#: keccak-256 of ``Transfer(address,address,uint256)``.
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")

# What nodes answer when a range holds too much (all seen in the wild):
#   geth, erigon, Infura (-32005)   "query returned more than 10000 results"
#   Alchemy (-32602)                "Log response size exceeded. ... this block range should work: [0x0, 0x87fe9]"
#   Infura (-32602)                 "range 1000000 exceeds limit of 10000"
#   QuickNode (-32614)              "eth_getLogs is limited to a 10,000 range"
#   Tenderly (-32602, in data)      "range 9009594 is bigger than range limit 2000"
#   reth                            "query exceeds max results 20000, retry with the range 25766988-25775072"
#   zkSync (-32602)                 "Query returned more than 10000 results. Try with this block range [0x0, 0x30f]."
#   erigon, others                  "block range too large", "Response is too big"
_RANGE_ERROR = re.compile(
    r"returned more than \d+ results|log response size exceeded|exceeds? (?:the )?limit of \d+"
    r"|limited to a [\d,]+ (?:block )?range|bigger than range limit|exceeds max results"
    r"|block range (?:is )?too (?:large|wide|big)|range too large|response is too big|too many (?:results|logs)",
    re.IGNORECASE)
_SUGGESTED_HEX = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")
_SUGGESTED_DEC = re.compile(r"range (\d+)\s*-\s*(\d+)")
_RATE_LIMIT = re.compile(r"rate.?limit|too many requests|exceeded .*capacity", re.IGNORECASE)
_RATE_LIMIT_CODES = frozenset({429, -32016, -32029, -32090})


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
    requests: int


class RangeTooLarge(Exception):
    """The node refused a range as too large or too full; ``suggested_to`` is where it said to stop, if it did."""

    def __init__(self, suggested_to: int | None):
        super().__init__("range too large")
        self.suggested_to = suggested_to


class TransferLogScanner:
    """Scans ``Transfer`` logs to wallets on one chain's JSON-RPC node.

    :param http: the HTTP client to send with; the caller owns and closes it.
    :param url: the node's endpoint (never quoted in an error).
    :param chain_id: the chain, for messages.
    :param timeout_s: timeout of each request.
    :param max_range: most blocks per ``eth_getLogs`` from the start (0: no limit, the node decides).
    :param reorg_blocks: blocks at the end of the previous scan scanned again.
    """

    def __init__(self, http: httpx.Client, url: str, *, chain_id: int, timeout_s: float, max_range: int = 0,
                 reorg_blocks: int = 0):
        self._http = http
        self._url = url
        self._where = f"chain {chain_id}"
        self._timeout_s = timeout_s
        self._max_range = max_range
        self._reorg_blocks = reorg_blocks

    def scan(self, wallet: str, *, start_block: int, previous: Cursor | None) -> Scan:
        """Scan the blocks of ``start_block..head`` not covered by ``previous`` for transfers to ``wallet``.

        :param wallet: lower-case 0x address.
        :param start_block: the first block of the history to scan (a floor per chain).
        :param previous: the cursor of the last scan, or ``None`` for a first scan.
        """
        counter = _Counter()
        head = _block_number(self._call("eth_blockNumber", [], counter), self._where)
        if previous is None:
            todo = [(start_block, head)]
            from_block = start_block
            found: set[str] = set()
        else:
            todo = []
            if start_block < previous.from_block:  # the floor was lowered since: scan the older history too
                todo.append((start_block, previous.from_block - 1))
            todo.append((max(previous.from_block, previous.to_block + 1 - self._reorg_blocks), head))
            from_block = min(start_block, previous.from_block)
            found = set(previous.tokens)
        known_before = frozenset(found)
        asked: list[tuple[int, int]] = []
        for first, last in todo:
            if first <= last:
                found |= self._scan_range(wallet, first, last, counter, asked)
        # A floor above the head (a young chain) leaves nothing scanned: to_block is then from_block - 1.
        cursor = Cursor(from_block=from_block,
                        to_block=max(head, from_block - 1, previous.to_block if previous else head),
                        tokens=frozenset(found))
        return Scan(cursor=cursor, new_tokens=frozenset(found - known_before), ranges=tuple(asked),
                    refused=counter.refused, requests=counter.requests)

    def _scan_range(self, wallet: str, first: int, last: int, counter: _Counter,
                    asked: list[tuple[int, int]]) -> set[str]:
        found: set[str] = set()
        wallet_topic = "0x" + wallet[2:].rjust(64, "0")
        span = self._max_range or (last - first + 1)
        start = first
        while start <= last:
            end = min(last, start + span - 1)
            asked.append((start, end))
            try:
                logs = self._get_logs(wallet_topic, start, end, counter)
            except RangeTooLarge as exc:
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
            found |= _token_addresses(logs, wallet_topic, self._where)
            start = end + 1
        return found

    def _get_logs(self, wallet_topic: str, first: int, last: int, counter: _Counter) -> list[Any]:
        result = self._call("eth_getLogs", [{"fromBlock": hex(first), "toBlock": hex(last),
                                             "topics": [TRANSFER_TOPIC, None, wallet_topic]}], counter)
        if not isinstance(result, list):
            raise PermanentProviderError("provider_bad_response", f"{self._where}: eth_getLogs returned no list")
        return result

    def _call(self, method: str, params: list[Any], counter: _Counter) -> Any:
        counter.requests += 1
        answer = request_json(self._http, "POST", self._url, timeout_s=self._timeout_s, where=self._where,
                              peer="the rpc node", json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                         "params": params})
        if not isinstance(answer, dict):
            raise PermanentProviderError("provider_bad_response", f"{self._where}: {method}: not a JSON-RPC answer")
        error = answer.get("error")
        if error is None:
            if "result" not in answer:
                raise PermanentProviderError("provider_bad_response", f"{self._where}: {method}: no result")
            return answer["result"]
        raise classify_error(error, method, self._where)


@dataclasses.dataclass
class _Counter:
    requests: int = 0
    refused: int = 0


def classify_error(error: Any, method: str, where: str) -> Exception:
    """The exception a JSON-RPC error object of ``eth_getLogs`` means: a range to split, or a provider error."""
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if type(code) is not int or not isinstance(message, str):
        return PermanentProviderError("provider_bad_response", f"{where}: {method}: malformed JSON-RPC error")
    data = error.get("data")
    # Some providers put the useful words in ``data`` (Tenderly's ``payload``), so both are read.
    text = message + " " + (_data_text(data) if data is not None else "")
    if _RANGE_ERROR.search(text):
        return RangeTooLarge(_suggested_end(text))
    quoted = re.sub(r"[^\x20-\x7e]", "?", message)[:200]  # never the URL: the node does not know it
    if code in _RATE_LIMIT_CODES or code == -32005 or _RATE_LIMIT.search(text):
        return TransientProviderError("provider_rate_limited", f"{where}: {method}: JSON-RPC error {code}: {quoted}")
    if 500 <= code <= 599 or code in (-32000, -32603):
        # "header not found", "backend request failed": a node behind a balancer that lags or hiccups.
        return TransientProviderError("provider_unavailable", f"{where}: {method}: JSON-RPC error {code}: {quoted}")
    return PermanentProviderError("provider_rejected", f"{where}: {method}: JSON-RPC error {code}: {quoted}")


def _data_text(value: Any) -> str:
    """``value`` (an error's ``data``) as text to search, bounded."""
    return (value if isinstance(value, str) else repr(value))[:2000]


def _suggested_end(text: str) -> int | None:
    match = _SUGGESTED_HEX.search(text)
    if match:
        return int(match.group(2), 16)
    match = _SUGGESTED_DEC.search(text)
    return int(match.group(2)) if match else None


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
