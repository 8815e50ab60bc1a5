"""JsonRpcClient against a local server (127.0.0.1): a call failing inside a batch is retried alone, a batch
refused as too large is split and later ones kept smaller, and errors that cannot mend are not retried."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from chaindata.base import PermanentProviderError, ProviderError
from chaindata.jsonrpc import JsonRpcClient
from chaindata.retrying import RetryPolicy, deadline_scope
from harness.fake_http import FakeHttpServer, Reply, Request
from settings.redaction import secret_keys_in_urls

FAST = RetryPolicy(tries=4, base_s=0.001, cap_s=0.01)


class Node(FakeHttpServer):
    """Answers ``eth_getBalance`` with the number in its params; ``broken`` params fail once each with
    ``error``; batches above ``max_batch`` get ``too_large`` (an HTTP 413, or a JSON-RPC error object)."""

    def __init__(self, *, broken=(), error=None, max_batch=None, too_large="413"):
        super().__init__()
        self.broken, self.error, self.max_batch, self.too_large = set(broken), error, max_batch, too_large

    def respond(self, request: Request) -> Reply:
        payload = request.json()
        if isinstance(payload, list) and self.max_batch and len(payload) > self.max_batch:
            if self.too_large == "413":
                return 413, "{}"
            return 200, json.dumps({"jsonrpc": "2.0", "id": None,
                                    "error": {"code": -32600, "message": "batch too large"}})
        answers = [self.answer(call) for call in (payload if isinstance(payload, list) else [payload])]
        return 200, json.dumps(answers if isinstance(payload, list) else answers[0])

    def answer(self, call: dict[str, Any]) -> dict[str, Any]:
        n = call["params"][0]
        if n in self.broken:
            self.broken.discard(n)
            return {"jsonrpc": "2.0", "id": call["id"], "error": self.error}
        return {"jsonrpc": "2.0", "id": call["id"], "result": hex(n)}


def client(node: Node, http: httpx.Client, retry: RetryPolicy = FAST) -> JsonRpcClient:
    return JsonRpcClient(http, node.url, timeout_s=5, where="chain 1", peer="the node", retry=retry)


@pytest.fixture
def http():
    with httpx.Client() as made:
        yield made


def calls(n: int) -> list[tuple[str, list[int]]]:
    return [("eth_getBalance", [i]) for i in range(n)]


@pytest.mark.parametrize("error", [{"code": -32000, "message": "header not found"},
                                   {"code": -32603, "message": "backend request failed"},
                                   {"code": -32005, "message": "limit exceeded"}])
def test_a_transient_item_is_retried_alone_not_with_its_batch(http, error):
    with Node(broken={2, 4}, error=error) as node:
        with deadline_scope(time.monotonic() + 10):
            outcomes = client(node, http).batch(calls(5))
    assert outcomes == [hex(i) for i in range(5)]
    bodies = [r.json() for r in node.requests]
    assert len(bodies[0]) == 5  # the batch, once
    assert sorted(body["params"][0] for body in bodies[1:]) == [2, 4]  # then each failed call, alone
    assert all(isinstance(body, dict) for body in bodies[1:])


def test_a_permanent_item_error_is_returned_not_retried(http):
    with Node(broken={1}, error={"code": 3, "message": "execution reverted"}) as node:
        outcomes = client(node, http).batch(calls(3))
    assert outcomes[0] == "0x0" and outcomes[2] == "0x2"
    assert isinstance(outcomes[1], PermanentProviderError) and outcomes[1].code == "call_reverted"
    assert len(node.requests) == 1


@pytest.mark.parametrize("too_large", ["413", "error object"])
def test_a_batch_too_large_is_split_and_later_batches_stay_small(http, too_large):
    with Node(max_batch=4, too_large=too_large) as node:
        rpc = client(node, http, RetryPolicy(tries=1))  # splitting needs no retry
        assert rpc.batch(calls(10)) == [hex(i) for i in range(10)]
        assert rpc.max_batch == 2
        sent_before = len(node.requests)
        assert rpc.batch(calls(6)) == [hex(i) for i in range(6)]
    sizes = [len(r.json()) for r in node.requests]
    assert sizes[:sent_before] == [10, 5, 2, 2, 2, 2, 2]  # refused at 10 and 5, then pieces of 2
    assert sizes[sent_before:] == [2, 2, 2]  # remembered: no more refusals


def test_quoted_server_text_is_scrubbed_of_what_the_settings_redact_and_nothing_else():
    # One rule for what in a provider URL is secret: the quoted text and the logs agree.
    key = "k3y%2Fwith-slash-0123456789"
    echo = FakeHttpServer(lambda request: (200, json.dumps({
        "jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": f"{request.target} {unquote(key)} v3"}})))
    with echo, httpx.Client() as http:
        url = f"{echo.url}/v3/{key}"
        rpc = JsonRpcClient(http, url, timeout_s=5, where="chain 1", peer="the node",
                            retry=RetryPolicy(tries=1))
        with pytest.raises(ProviderError) as caught:
            rpc.call("eth_blockNumber", [])
    message = str(caught.value)
    assert key not in message and unquote(key) not in message
    assert secret_keys_in_urls(url) >= {key, unquote(key)}
    assert message.endswith("/v3/*** *** v3")  # short parts, like "v3", are no secret
