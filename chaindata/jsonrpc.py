"""A tiny JSON-RPC 2.0 over HTTP client, and the HTTP error mapping every real data source shares.

Failures become the errors of :mod:`chaindata.base`, classed by the table of
:mod:`chaindata.node_errors` (HTTP statuses, ``Retry-After``, and the JSON-RPC
error codes and texts real nodes return).  Besides, a client given a
:class:`~chaindata.budget.ProviderBudget` spends it before every request and
pauses it on ``Retry-After``; reads are retried within the attempt's deadline
(:mod:`chaindata.retrying`): a whole request that failed transiently is sent
again, a call of a batch that failed alone is retried alone, and a batch the
server finds too large (413) is split in halves, and later ones kept smaller.

The providers add ``unsupported_chain`` (no endpoint configured for the
chain), ``invalid_wallet`` and ``provider_misconfigured`` (an endpoint serving
another chain than the one it is configured for), all permanent.

Endpoint URLs often carry an API key in their path, or a password, so no
message built here contains the URL, and text quoted from the server is
scrubbed of every long part of it.  Errors are raised ``from None`` so that a
logged traceback does not show httpx's own exception, whose request holds the URL.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import httpx

from chaindata import node_errors
from chaindata.base import PermanentProviderError, ProviderError, TransientProviderError
from chaindata.budget import ProviderBudget, send_within_budget
from chaindata.node_errors import BatchTooLarge
from chaindata.retrying import RetryPolicy, call_with_retries, current_deadline
from settings.redaction import secret_keys_in_urls

_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
#: Quoted server text is cut to this many characters, so a chatty server cannot flood the audit trail.
_MAX_QUOTED = 200
#: An error's ``data`` is read, to class the error, up to this many characters.
_MAX_DATA_READ = 2000


def request_json(http: httpx.Client, method: str, url: str, *, timeout_s: float, where: str, peer: str,
                 **kwargs: Any) -> Any:
    """Send one HTTP request and return its body parsed as JSON, every failure mapped to a ``ProviderError``.

    :param http: the client to send with (its connections are reused).
    :param method: the HTTP method, e.g. ``"POST"``.
    :param url: the full URL; it never appears in an error message.
    :param timeout_s: timeout, in seconds, of each phase (connect, write, read, pool) of this request.
    :param where: what the request is for, starting every message, e.g. ``"chain 1"``.
    :param peer: who answers, as messages name it, e.g. ``"the rpc provider"``.
    :param kwargs: passed on to :meth:`httpx.Client.request` (``json=``, ``params=``, ``headers=``).

    Numbers with a fraction parse as :class:`~decimal.Decimal` (never through
    ``float``), and so do ``NaN`` and ``Infinity``, which callers can then reject.
    """
    try:
        response = http.request(method, url, timeout=timeout_s, **kwargs)
    except httpx.TimeoutException:
        raise TransientProviderError("provider_timeout",
                                     f"{where}: no answer from {peer} within {timeout_s:g} s") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise PermanentProviderError("provider_misconfigured", f"{where}: the URL of {peer} cannot be used") from None
    except httpx.DecodingError:
        raise PermanentProviderError("provider_bad_response", f"{where}: undecodable body from {peer}") from None
    except httpx.RequestError as exc:  # connection refused or reset, protocol errors...
        raise TransientProviderError("provider_unavailable",
                                     f"{where}: cannot reach {peer} ({type(exc).__name__})") from None

    status = response.status_code
    reason = {429: " (rate limited)", 408: " (request timeout)", 413: " (request too large)"}.get(status, "")
    error = node_errors.http_status(status, f"{where}: HTTP {status}{reason} from {peer}",
                                    response.headers.get("retry-after"))
    if error is not None:
        raise error
    try:
        return json.loads(response.content, parse_float=Decimal, parse_constant=Decimal)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PermanentProviderError("provider_bad_response", f"{where}: malformed JSON from {peer}") from None


def parse_quantity(value: Any) -> int:
    """The integer of a JSON-RPC hex quantity such as ``"0x1bc16d674ec80000"``; ``ValueError`` if it is none."""
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise ValueError("not a hex quantity")
    return int(value, 16)


class JsonRpcClient:
    """JSON-RPC 2.0 calls to one endpoint; safe to share between threads.

    :param http: the HTTP client to send with; the caller owns and closes it.
    :param url: the endpoint; kept out of every message, and scrubbed from quoted server text.
    :param timeout_s: timeout of every HTTP request, in seconds (see :func:`request_json`).
    :param where: start of every error message, e.g. ``"chain 1"``.
    :param peer: how messages name the server, e.g. ``"the rpc provider"``.
    :param max_batch: most calls sent in one HTTP request by :meth:`batch` (default 100, a limit many
        public endpoints enforce); a longer batch goes out as several requests.  A server refusing a
        batch as too large lowers it for this client's later batches (never below 1).
    :param budget: the provider's shared rate budget, spent before each request (None: no budget).
    :param units: the compute units one call of a method costs, for the budget (default: 1 each).
    :param retry: how reads are retried within the attempt's deadline (``tries=1``: not at all).

    Every call here is a read, so sending one again is always safe.
    """

    def __init__(self, http: httpx.Client, url: str, *, timeout_s: float, where: str, peer: str,
                 max_batch: int = 100, budget: ProviderBudget | None = None,
                 units: Callable[[str], int] | None = None, retry: RetryPolicy = RetryPolicy()):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._http = http
        self._url = url
        self._timeout_s = timeout_s
        self._where = where
        self._peer = peer
        self._max_batch = max_batch
        self._budget = budget
        self._units = units or (lambda method: 1)
        self._retry = retry
        self._lock = threading.Lock()  # guards _max_batch, lowered by any thread
        # The same parts as the settings redact from logs; longest first, so a secret containing another
        # is replaced whole.
        self._secrets = tuple(sorted(secret_keys_in_urls(url), key=len, reverse=True))

    @property
    def max_batch(self) -> int:
        """The most calls this client now sends in one request."""
        return self._max_batch

    def call(self, method: str, params: Sequence[Any]) -> Any:
        """The ``result`` of one call of ``method`` with ``params``; raises ``ProviderError`` on any failure."""
        return self._retrying(lambda: self._call_once(method, params))

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """The outcome of each ``(method, params)`` of ``calls``, in the same order.

        Each outcome is the call's ``result``, or a ``ProviderError`` *instance*
        (returned, not raised) for a call the server answered with a JSON-RPC
        error that one more try, alone, did not mend; so the caller decides
        whether that one call sinks the rest.  Failures of a whole request
        (HTTP, transport, malformed answer) that retries did not mend are
        raised.  Calls go out ``max_batch`` at a time; no call means no request.
        """
        outcomes: list[Any] = []
        start = 0
        while start < len(calls):
            size = self._max_batch
            chunk = calls[start:start + size]
            try:
                outcomes.extend(self._retrying(lambda: self._batch_once(chunk)))
            except BatchTooLarge:
                if len(chunk) == 1:
                    raise
                with self._lock:  # later batches of every thread stay below what was refused
                    self._max_batch = min(self._max_batch, max(1, len(chunk) // 2))
                continue
            start += len(chunk)
        for i, outcome in enumerate(outcomes):
            # A call that failed transiently inside a batch is retried alone, not with the whole batch.
            if isinstance(outcome, TransientProviderError):
                method, params = calls[i]
                try:
                    outcomes[i] = self.call(method, params)
                except ProviderError as exc:
                    outcomes[i] = exc
        return outcomes

    def _retrying(self, send: Callable[[], Any]) -> Any:
        return call_with_retries(send, policy=self._retry, deadline=current_deadline())

    def _call_once(self, method: str, params: Sequence[Any]) -> Any:
        answer = self._post({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, (method,))
        # An error answer may carry id null (the server could not read our id), so only results must match it.
        if not isinstance(answer, dict) or (answer.get("error") is None and answer.get("id") != 1):
            raise self._bad_response(f"{method}: not a JSON-RPC answer")
        outcome = self._outcome(answer, method)
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def _batch_once(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        answer = self._post([{"jsonrpc": "2.0", "id": i, "method": method, "params": list(params)}
                             for i, (method, params) in enumerate(calls)], [method for method, _ in calls])
        if isinstance(answer, dict) and answer.get("error") is not None:
            # Servers that refuse a batch as a whole (too large, rate limited) answer with one error object.
            error = self._outcome(answer, "batch")
            raise error if isinstance(error, ProviderError) else self._bad_response("batch: not a JSON-RPC answer")
        if not isinstance(answer, list):
            raise self._bad_response("batch: the answer is not a list")
        by_id: dict[int, dict[str, Any]] = {}
        for item in answer:
            item_id = item.get("id") if isinstance(item, dict) else None
            # type() rather than isinstance(): True is an int in Python, but no id of ours.
            if type(item_id) is not int or not 0 <= item_id < len(calls) or item_id in by_id:
                raise self._bad_response("batch: an answer has a missing, unknown or repeated id")
            by_id[item_id] = item
        if len(by_id) != len(calls):
            raise self._bad_response(f"batch: {len(calls) - len(by_id)} of {len(calls)} calls went unanswered")
        return [self._outcome(by_id[i], method) for i, (method, _) in enumerate(calls)]

    def _post(self, payload: Any, methods: Sequence[str]) -> Any:
        return send_within_budget(
            self._budget, lambda: request_json(self._http, "POST", self._url, timeout_s=self._timeout_s,
                                               where=self._where, peer=self._peer, json=payload),
            units=sum(self._units(m) for m in methods))

    def _outcome(self, answer: dict[str, Any], method: str) -> Any:
        """The result of one answer object, or the ``ProviderError`` its error object means."""
        error = answer.get("error")
        if error is None:
            if "result" not in answer:
                return self._bad_response(f"{method}: an answer has neither result nor error")
            return answer["result"]
        code = error.get("code") if isinstance(error, dict) else None
        text = error.get("message") if isinstance(error, dict) else None
        if type(code) is not int or not isinstance(text, str):
            return self._bad_response(f"{method}: malformed JSON-RPC error object")
        message = f"{self._where}: {method} failed at {self._peer}: JSON-RPC error {code}: {self._quote(text)}"
        data = error.get("data")
        if data is not None:  # some providers (Tenderly) say what went wrong in data only
            text += " " + (data if isinstance(data, str) else repr(data))[:_MAX_DATA_READ]
        return node_errors.error_for(code, text, message)

    def _bad_response(self, detail: str) -> PermanentProviderError:
        return PermanentProviderError("provider_bad_response", f"{self._where}: bad answer from {self._peer}: {detail}")

    def _quote(self, text: str) -> str:
        """Server text made safe to quote: every long part of our URL replaced by ``***``, then shortened."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:_MAX_QUOTED]

