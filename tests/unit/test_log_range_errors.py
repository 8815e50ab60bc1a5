"""The eth_getLogs errors of real nodes and providers: which mean "split the range", and where they say to stop.

Classed as every JSON-RPC error is, by chaindata.node_errors through the JsonRpcClient (a server on
127.0.0.1 answers with each error object).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from chaindata.base import PermanentProviderError, ProviderError, TransientProviderError
from chaindata.jsonrpc import JsonRpcClient
from chaindata.node_errors import LogRangeTooLarge
from chaindata.retrying import RetryPolicy
from harness.fake_http import FakeHttpServer


def classify_error(error: dict[str, Any]) -> ProviderError:
    """The error the scanner gets for an ``eth_getLogs`` answered with ``error``."""
    answer = json.dumps({"jsonrpc": "2.0", "id": 1, "error": error})
    with FakeHttpServer(lambda request: (200, answer)) as node, httpx.Client() as http:
        client = JsonRpcClient(http, node.url, timeout_s=5, where="chain 1", peer="the node",
                               retry=RetryPolicy(tries=1))
        with pytest.raises(ProviderError) as caught:
            client.call("eth_getLogs", [{}])
    return caught.value

ALCHEMY = ("Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit "
           "on the response size, or you can request any block range with a cap of 10K logs in the response. Based "
           "on your parameters and the response size limit, this block range should work: [0x0, 0x87fe9]")


@pytest.mark.parametrize("error, suggested_to", [
    ({"code": -32005, "message": "query returned more than 10000 results"}, None),  # geth, erigon, Infura
    ({"code": -32602, "message": ALCHEMY}, 0x87FE9),  # Alchemy: the suggestion ends the long message
    ({"code": -32602, "message": "range 1000000 exceeds limit of 10000"}, None),  # Infura
    ({"code": -32614, "message": "eth_getLogs is limited to a 10,000 range"}, None),  # QuickNode
    ({"code": -32602, "message": "invalid params",  # Tenderly: the words are in data
      "data": {"error_id": "4ed9", "payload": "range 9009594 is bigger than range limit 2000"}}, None),
    ({"code": -32602, "message": "query exceeds max results 20000, retry with the range 25766988-25775072"},
     25775072),  # reth
    ({"code": -32602, "message": "Query returned more than 10000 results. Try with this block range [0x0, 0x30f]."},
     0x30F),  # zkSync
    ({"code": -32000, "message": "block range too large"}, None),
])
def test_range_errors_are_recognised_with_their_suggestion(error: dict, suggested_to: int | None) -> None:
    outcome = classify_error(error)
    assert isinstance(outcome, LogRangeTooLarge) and outcome.code == "logs_range_too_large"
    assert outcome.suggested_to == suggested_to


@pytest.mark.parametrize("error, kind, code", [
    ({"code": -32005, "message": "limit exceeded"}, TransientProviderError, "provider_rate_limited"),  # Infura rate
    ({"code": 429, "message": "Your app has exceeded its compute units per second capacity"},
     TransientProviderError, "provider_rate_limited"),  # Alchemy
    ({"code": -32000, "message": "header not found"}, TransientProviderError, "provider_lagging"),
    ({"code": -32602, "message": "invalid argument 0: hex string without 0x prefix"},
     PermanentProviderError, "provider_rejected"),
    ({"code": "x", "message": "?"}, PermanentProviderError, "provider_bad_response"),
])
def test_other_errors_are_provider_errors(error: dict, kind: type, code: str) -> None:
    outcome = classify_error(error)
    assert isinstance(outcome, kind) and not isinstance(outcome, LogRangeTooLarge) and outcome.code == code
    assert str(outcome).startswith("chain 1: ") and "eth_getLogs" in str(outcome)  # the chain, then the method
