"""Polling helpers for tests that wait on real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import actors

T = TypeVar("T")
FINAL = ("succeeded", "partial", "failed")


def wait_for(op_id: str, statuses=FINAL, timeout: float = 30) -> dict:
    """The operation's record once its status is one of ``statuses``; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = actors.get_sync(op_id)
        if op and op["status"] in statuses:
            return op
        time.sleep(0.05)
    raise AssertionError(f"operation {op_id} not in {statuses} after {timeout} s: {actors.get_sync(op_id)}")


def wait_until(predicate: Callable[[], T], timeout: float, message: str) -> T:
    """The first truthy value of ``predicate()``, polled every 0.1 s; fails with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(message)
