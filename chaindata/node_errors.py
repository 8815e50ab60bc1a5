"""What the errors real nodes and providers return mean: one table, read by the transport and the retries.

A JSON-RPC error object is matched against :data:`JSONRPC_ERRORS` in order:
the first row whose code matches (``None`` matches any code) and whose
pattern is found in the message wins.  The table is what geth, erigon,
Nethermind, Infura, Alchemy and the public endpoints answer in practice (the
README's "Provider errors" section shows it as a table); a row's ``code`` is
what the audit trail records and its ``transient`` whether trying again may
help.  An error no row matches is permanent (a revert, bad params).

HTTP statuses are classed by :func:`http_status`; a ``Retry-After`` header
(seconds, or an HTTP date) is read by :func:`retry_after_s`.

An ``eth_getLogs`` over a range the node finds too large or too full is a
:class:`LogRangeTooLarge`, with the block where the node said to stop when it
names one (:func:`suggested_range_end`): the scanner of
:mod:`chaindata.tokens.discovery` splits the range and asks again.
"""

from __future__ import annotations

import dataclasses
import email.utils
import re
import time

from chaindata.base import PermanentProviderError, ProviderError, TransientProviderError

#: A ``Retry-After`` longer than this is cut to it: a server cannot park our workers for hours.
MAX_RETRY_AFTER_S = 300.0


@dataclasses.dataclass(frozen=True)
class ErrorRule:
    """One row of the table: JSON-RPC ``codes`` (empty: any) whose message matches ``pattern`` (None: any)."""

    codes: frozenset[int]
    pattern: re.Pattern[str] | None
    code: str
    transient: bool
    why: str

    def matches(self, code: int, message: str) -> bool:
        return (not self.codes or code in self.codes) and (self.pattern is None or bool(self.pattern.search(message)))


def _rule(codes: tuple[int, ...], pattern: str | None, code: str, transient: bool, why: str) -> ErrorRule:
    return ErrorRule(frozenset(codes), re.compile(pattern, re.IGNORECASE) if pattern else None, code, transient, why)


# What nodes answer when an eth_getLogs range holds too much (all seen in the wild):
#   geth, erigon, Infura (-32005)   "query returned more than 10000 results"
#   Alchemy (-32602)                "Log response size exceeded. ... this block range should work: [0x0, 0x87fe9]"
#   Infura (-32602)                 "range 1000000 exceeds limit of 10000"
#   QuickNode (-32614)              "eth_getLogs is limited to a 10,000 range"
#   Tenderly (-32602, in data)      "range 9009594 is bigger than range limit 2000"
#   reth                            "query exceeds max results 20000, retry with the range 25766988-25775072"
#   zkSync (-32602)                 "Query returned more than 10000 results. Try with this block range [0x0, 0x30f]."
#   erigon, others                  "block range too large", "Response is too big"
_LOG_RANGE_TOO_LARGE = (
    r"returned more than \d+ results|log response size exceeded|exceeds? (?:the )?limit of \d+"
    r"|limited to a [\d,]+ (?:block )?range|bigger than range limit|exceeds max results"
    r"|block range (?:is )?too (?:large|wide|big)|range too large|response is too big|too many (?:results|logs)")
_SUGGESTED_HEX = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")
_SUGGESTED_DEC = re.compile(r"range (\d+)\s*-\s*(\d+)")

#: The table, first match wins.  Order matters: specific texts before the catch-alls of their codes (a range
#: too full comes first, as Infura says it under -32005, its rate-limit code).
JSONRPC_ERRORS: tuple[ErrorRule, ...] = (
    _rule((), _LOG_RANGE_TOO_LARGE, "logs_range_too_large", False,
          "eth_getLogs over too many blocks or logs: the same range fails again, so discovery splits it "
          "(where the node suggests, if it does)"),
    _rule((), r"batch (?:too large|size)|too many (?:requests in|calls in|items in) (?:the )?batch|"
              r"batch limit", "provider_batch_too_large", True,
          "the node caps batch size: the client halves its batches and sends again"),
    _rule((429, -32005, -32016, -32029, -32090), None, "provider_rate_limited", True,
          "Alchemy 429, Infura -32005 'limit exceeded', public endpoints' -32016/-32029/-32090"),
    _rule((), r"rate.?limit|too many requests|exceeded .*(?:capacity|compute units|quota)|limit exceeded",
          "provider_rate_limited", True, "the same, said in words under another code"),
    _rule((), r"header not found|unknown block|block not found|missing trie node|state (?:is )?not available|"
              r"pruned", "provider_lagging", True,
          "geth/erigon -32000 'header not found': a load-balanced node behind the block we asked about"),
    _rule((), r"backend request failed|upstream|bad gateway|gateway timeout|internal server error|"
              r"temporarily unavailable|overloaded|service unavailable|try again|timeout|timed out|"
              r"connection (?:reset|refused)|request failed", "provider_unavailable", True,
          "-32603 'backend request failed' (Alchemy, Infura), proxies' 502/503/504 texts"),
    _rule(tuple(range(500, 600)), None, "provider_unavailable", True, "HTTP-like 5xx codes in a JSON-RPC error"),
    _rule((-32603,), r"internal", "provider_unavailable", True,
          "-32603 'internal error' without more: the node failed, not our request"),
    _rule((-32601,), None, "provider_unsupported_method", False, "method not found: the endpoint lacks it"),
    _rule((-32600, -32602, -32700), None, "provider_rejected", False, "invalid request, params or JSON"),
    _rule((3,), None, "call_reverted", False, "geth's code 3: execution reverted (with data)"),
    _rule((), r"execution reverted|revert|invalid opcode|out of gas", "call_reverted", False,
          "the contract call itself failed: the same call fails again"),
)


def classify(code: int, message: str) -> ErrorRule | None:
    """The first row of :data:`JSONRPC_ERRORS` matching a JSON-RPC error, or None (permanent, ``provider_rejected``)."""
    for rule in JSONRPC_ERRORS:
        if rule.matches(code, message):
            return rule
    return None


class RateLimited(TransientProviderError):
    """The server said "slow down"; ``retry_after_s`` is when it said to come back (None: it did not say)."""

    def __init__(self, code: str, message: str, retry_after_s: float | None = None):
        super().__init__(code, message)
        self.retry_after_s = retry_after_s


class BatchTooLarge(TransientProviderError):
    """The server refused a JSON-RPC batch for its size (HTTP 413, or an error saying so)."""


class LogRangeTooLarge(PermanentProviderError):
    """``eth_getLogs`` over a range the node finds too large or too full; ``suggested_to`` is the block where
    the node said to stop (None: it did not say).  Permanent: that range fails again, a smaller one may not."""

    def __init__(self, code: str, message: str, suggested_to: int | None = None):
        super().__init__(code, message)
        self.suggested_to = suggested_to


def suggested_range_end(text: str) -> int | None:
    """The last block of the range a node's error text suggests (``[0x0, 0x30f]``, ``range 10-20``), or None."""
    match = _SUGGESTED_HEX.search(text)
    if match:
        return int(match.group(2), 16)
    match = _SUGGESTED_DEC.search(text)
    return int(match.group(2)) if match else None


def error_for(code: int, text: str, message: str) -> ProviderError:
    """The ``ProviderError`` a JSON-RPC error object of ``code`` and ``text`` means, saying ``message``
    (``text`` made safe to quote).  ``text`` is the error's message, and its ``data`` as text if it has
    one (some providers put the useful words there)."""
    rule = classify(code, text)
    if rule is None:
        return PermanentProviderError("provider_rejected", message)
    if rule.code == "logs_range_too_large":
        return LogRangeTooLarge(rule.code, message, suggested_range_end(text))
    if rule.code == "provider_rate_limited":
        return RateLimited(rule.code, message)
    if rule.code == "provider_batch_too_large":
        return BatchTooLarge(rule.code, message)
    return (TransientProviderError if rule.transient else PermanentProviderError)(rule.code, message)


def http_status(status: int, message: str, retry_after: str | None) -> ProviderError | None:
    """The ``ProviderError`` an HTTP status means, or None for a 2xx.

    429 and 503 may carry ``Retry-After`` (RFC 9110); 413 is a batch (or body) too large.
    """
    if 200 <= status < 300:
        return None
    if status == 429:
        return RateLimited("provider_rate_limited", message, retry_after_s(retry_after))
    if status == 413:
        return BatchTooLarge("provider_batch_too_large", message)
    if status == 408:
        return TransientProviderError("provider_timeout", message)
    if status == 503 and retry_after is not None:
        return RateLimited("provider_unavailable", message, retry_after_s(retry_after))
    if status >= 500:
        return TransientProviderError("provider_unavailable", message)
    return PermanentProviderError("provider_rejected", message)


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait that a ``Retry-After`` header says (delay-seconds or an HTTP date), capped at
    :data:`MAX_RETRY_AFTER_S`; None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # int() refuses other digits, such as '²'
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - (time.time() if now is None else now)), MAX_RETRY_AFTER_S)
