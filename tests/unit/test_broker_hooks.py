"""SyncBroker.emit_before/emit_after: only the hooks a middleware defines are called, in Dramatiq's
order (before: first to last; after: last to first), with Dramatiq's error handling."""

from __future__ import annotations

import logging

import pytest
import redis
from dramatiq.middleware import Middleware, MiddlewareError

from actors.redis_backed.broker import SyncBroker


class Recording(Middleware):
    def __init__(self, name, calls, fail=None):
        self.name, self.calls, self.fail = name, calls, fail

    def before_enqueue(self, broker, message, delay):
        self.calls.append(("before", self.name))
        if self.fail:
            raise self.fail

    def after_enqueue(self, broker, message, delay):
        self.calls.append(("after", self.name))
        if self.fail:
            raise self.fail


class Silent(Middleware):
    """Defines no hook of its own: Middleware's no-ops are never called."""


def broker_with(*middleware):
    # No Redis is contacted: the broker only registers its scripts on the client.
    return SyncBroker(client=redis.Redis(port=1), namespace="hooks-test", middleware=list(middleware))


def test_only_defined_hooks_run_in_dramatiqs_order():
    calls = []
    broker = broker_with(Recording("a", calls), Silent(), Recording("b", calls))
    assert [type(h.__self__) for h in broker._hooks_of("before_enqueue")] == [Recording, Recording]
    assert broker._hooks_of("before_ack") == []
    broker.emit_before("enqueue", "message", None)
    broker.emit_after("enqueue", "message", None)
    assert calls == [("before", "a"), ("before", "b"), ("after", "b"), ("after", "a")]


def test_a_middleware_added_later_is_called_too():
    calls = []
    broker = broker_with(Recording("a", calls))
    broker.emit_before("enqueue", "message", None)
    broker.add_middleware(Recording("late", calls))
    broker.emit_before("enqueue", "message", None)
    assert calls == [("before", "a"), ("before", "a"), ("before", "late")]


def test_errors_are_logged_and_middleware_errors_raised(caplog):
    calls = []
    broker = broker_with(Recording("boom", calls, fail=RuntimeError("boom")), Recording("next", calls))
    with caplog.at_level(logging.CRITICAL):
        broker.emit_before("enqueue", "message", None)
        broker.emit_after("enqueue", "message", None)
    assert calls == [("before", "boom"), ("before", "next"), ("after", "next"), ("after", "boom")]
    assert caplog.text.count("Unexpected failure in") == 2

    stopping = broker_with(Recording("stop", [], fail=MiddlewareError("stop")))
    with pytest.raises(MiddlewareError):
        stopping.emit_before("enqueue", "message", None)
