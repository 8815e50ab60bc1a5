"""A fault relay: a local HTTP proxy (127.0.0.1, any port) in front of a JSON-RPC node, misbehaving as real
providers do.

Each POST is passed on to the node, except that, drawn from a seeded random generator:

* a share ``rate_limited`` of requests is answered ``429`` with ``Retry-After: <retry_after_s>``, and so
  are the first ``refuse_first`` requests (a limit that lifts, whatever the timing);
* a batch of more than ``max_batch`` items is answered ``413`` (as endpoints that cap batches do);
* a share ``item_errors`` of the items of a relayed batch gets, instead of its answer, a JSON-RPC error of
  those real nodes return for transient trouble: ``-32000 header not found`` (geth, erigon behind a load
  balancer) or ``-32603 backend request failed`` (Alchemy, Infura);
* a share ``header_not_found`` of single (non-batch) requests is answered ``-32000 header not found``.

``counts`` says how many faults of each kind were injected, so a test can tell they really happened::

    with FaultRelay(anvil.url, rate_limited=0.1, item_errors=0.2, max_batch=8) as relay:
        ...  # point the code under test at relay.url
    assert relay.counts["413"] > 0
"""

from __future__ import annotations

import collections
import json
import random
import threading
from typing import Any

import httpx

from harness.fake_http import FakeHttpServer, Reply, Request

__all__ = ["FaultRelay"]

_TRANSIENT_ITEM_ERRORS = ({"code": -32000, "message": "header not found"},
                          {"code": -32603, "message": "backend request failed"})


class FaultRelay(FakeHttpServer):
    def __init__(self, target: str, *, rate_limited: float = 0.0, retry_after_s: int = 1, item_errors: float = 0.0,
                 header_not_found: float = 0.0, max_batch: int | None = None, refuse_first: int = 0, seed: int = 13):
        super().__init__()
        self.target = target
        self.rate_limited = rate_limited
        self.retry_after_s = retry_after_s
        self.item_errors = item_errors
        self.header_not_found = header_not_found
        self.max_batch = max_batch
        self.refuse_first = refuse_first
        self.counts: collections.Counter[str] = collections.Counter()
        self._rng = random.Random(seed)
        self._seen = 0
        self._lock = threading.Lock()  # the server answers from several threads; the draws stay in order
        self._upstream = httpx.Client(timeout=10)

    def draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def _refused_first(self) -> bool:
        with self._lock:
            self._seen += 1
            return self._seen <= self.refuse_first

    def respond(self, request: Request) -> Reply:
        payload = request.json()
        if self._refused_first() or self.draw() < self.rate_limited:
            self.counts["429"] += 1
            return 429, '{"error": "Too Many Requests"}', {"Retry-After": str(self.retry_after_s)}
        if isinstance(payload, list) and self.max_batch is not None and len(payload) > self.max_batch:
            self.counts["413"] += 1
            return 413, '{"error": "batch too large"}'
        if isinstance(payload, dict) and self.draw() < self.header_not_found:
            self.counts["header_not_found"] += 1
            return 200, json.dumps({"jsonrpc": "2.0", "id": payload.get("id"), "error": _TRANSIENT_ITEM_ERRORS[0]})
        answer = self._upstream.post(self.target, content=request.body, headers={"content-type": "application/json"})
        if not isinstance(payload, list) or answer.status_code != 200:
            return answer.status_code, answer.content
        items: list[dict[str, Any]] = answer.json()
        for item in items:
            if self.draw() < self.item_errors:
                self.counts["item_error"] += 1
                item.pop("result", None)
                item["error"] = _TRANSIENT_ITEM_ERRORS[self.counts["item_error"] % 2]
        return 200, json.dumps(items)

    def __exit__(self, *exc_info: Any) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            self._upstream.close()
