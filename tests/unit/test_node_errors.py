"""The error table: what real nodes and providers answer, classed as the README says."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest

from chaindata.base import PermanentProviderError, TransientProviderError
from chaindata.node_errors import BatchTooLarge, RateLimited, error_for, http_status, retry_after_s


@pytest.mark.parametrize(("code", "text", "expected", "transient"), [
    (-32000, "header not found", "provider_lagging", True),  # geth / erigon behind a load balancer
    (-32000, "missing trie node 9a3f... (path )", "provider_lagging", True),
    (-32603, "backend request failed", "provider_unavailable", True),  # alchemy / infura
    (-32603, "Internal error", "provider_unavailable", True),
    (-32005, "limit exceeded", "provider_rate_limited", True),  # infura
    (429, "Your app has exceeded its compute units per second capacity.", "provider_rate_limited", True),
    (-32000, "request rate limited", "provider_rate_limited", True),
    (-32600, "batch too large", "provider_batch_too_large", True),
    (-32000, "execution reverted", "call_reverted", False),
    (3, "execution reverted: ERC20: paused", "call_reverted", False),
    (-32601, "the method alchemy_getTokenBalances does not exist/is not available", "provider_unsupported_method",
     False),
    (-32602, "invalid argument 0: hex string has length 3", "provider_rejected", False),
    (-32000, "something nobody documented", "provider_rejected", False),
])
def test_node_errors_are_classed(code, text, expected, transient):
    error = error_for(code, text, f"chain 1: {text}")
    assert error.code == expected and error.transient is transient
    assert isinstance(error, TransientProviderError if transient else PermanentProviderError)


def test_http_statuses():
    assert http_status(200, "m", None) is None
    limited = http_status(429, "m", "7")
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 7
    assert isinstance(http_status(413, "m", None), BatchTooLarge)
    unavailable = http_status(503, "m", "2")
    assert isinstance(unavailable, RateLimited) and unavailable.code == "provider_unavailable"
    assert http_status(502, "m", None).transient and not http_status(401, "m", None).transient


def test_retry_after_reads_seconds_and_dates_and_caps_them():
    now = 1_767_225_600.0
    date = email.utils.format_datetime(dt.datetime.fromtimestamp(now + 30, dt.UTC), usegmt=True)
    assert retry_after_s(date, now=now) == pytest.approx(30)
    assert retry_after_s("12") == 12 and retry_after_s("999999") == 300
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("-3") is None


def test_a_retry_after_of_other_unicode_digits_is_unreadable_not_a_crash():
    assert retry_after_s("²") is None and retry_after_s("٣") is None
