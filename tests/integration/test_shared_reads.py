"""actors.redis_backed.shared_reads against the real Redis: one read for many concurrent syncs, and no sync stuck."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid

import pytest

from actors.redis_backed.shared_reads import SharedReads
from tests.conftest import NAMESPACE

pytestmark = pytest.mark.integration


def _reads(redis_client, **kwargs) -> SharedReads:
    return SharedReads(redis_client, namespace=NAMESPACE, **{"window_ms": 5000, "lock_ms": 3000, **kwargs})


def test_twenty_concurrent_syncs_share_one_read(redis_client):
    reads, what = _reads(redis_client), f"rpc:1:{uuid.uuid4().hex}"
    calls = []
    start = threading.Barrier(20)

    def provider() -> bytes:
        calls.append(1)
        time.sleep(0.3)  # long enough that every other sync arrives while this read runs
        return b"balances at block 7"

    def sync() -> tuple[bytes, bool]:
        start.wait()
        return reads.read(what, provider, deadline=time.monotonic() + 10)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: sync(), range(20)))
    assert len(calls) == 1
    assert {answer for answer, _shared in answers} == {b"balances at block 7"}
    assert sorted(shared for _answer, shared in answers) == [False] + [True] * 19
    assert_every_key_expires(redis_client, what)


def test_a_read_is_shared_only_within_its_window(redis_client):
    reads, what = _reads(redis_client, window_ms=200), f"rpc:1:{uuid.uuid4().hex}"
    answers = iter([b"first", b"second"])
    assert reads.read(what, lambda: next(answers), deadline=time.monotonic() + 5) == (b"first", False)
    assert reads.read(what, lambda: next(answers), deadline=time.monotonic() + 5) == (b"first", True)
    time.sleep(0.3)
    assert reads.read(what, lambda: next(answers), deadline=time.monotonic() + 5) == (b"second", False)


def test_a_failed_read_is_not_shared_and_a_waiter_reads_in_its_place(redis_client):
    reads, what = _reads(redis_client), f"rpc:1:{uuid.uuid4().hex}"
    first_started = threading.Event()

    def failing() -> bytes:
        first_started.set()
        time.sleep(0.2)
        raise TimeoutError("the provider did not answer")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(reads.read, what, failing, deadline=time.monotonic() + 5)
        first_started.wait(5)
        second = pool.submit(reads.read, what, lambda: b"read again", deadline=time.monotonic() + 5)
        with pytest.raises(TimeoutError):
            first.result(5)
        assert second.result(5) == (b"read again", False)
    assert redis_client.get(f"{NAMESPACE}:shared-read:{what}:lock") is None
    assert_every_key_expires(redis_client, what)


def assert_every_key_expires(redis_client, what: str) -> None:
    """No key of the read (the read, its lock, the waiters' wake-up lists) is left without an expiry."""
    keys = list(redis_client.scan_iter(match=f"{NAMESPACE}:shared-read:{what}*"))
    assert keys and all(redis_client.pttl(key) > 0 for key in keys), {k: redis_client.pttl(k) for k in keys}


def test_a_waiter_reads_for_itself_at_its_deadline_when_the_reader_hangs(redis_client):
    reads, what = _reads(redis_client, lock_ms=10_000), f"rpc:1:{uuid.uuid4().hex}"
    # A reader that died holding the lock: nobody will wake the waiters.
    redis_client.set(f"{NAMESPACE}:shared-read:{what}:lock", "dead-reader", px=10_000)
    started = time.monotonic()
    assert reads.read(what, lambda: b"own read", deadline=started + 0.5) == (b"own read", False)
    assert 0.4 <= time.monotonic() - started < 2.0


def test_window_zero_turns_sharing_off(redis_client):
    reads, what = _reads(redis_client, window_ms=0), f"rpc:1:{uuid.uuid4().hex}"
    answers = iter([b"one", b"two"])
    assert reads.read(what, lambda: next(answers), deadline=time.monotonic() + 5) == (b"one", False)
    assert reads.read(what, lambda: next(answers), deadline=time.monotonic() + 5) == (b"two", False)
    assert not list(redis_client.scan_iter(match=f"{NAMESPACE}:shared-read:{what}*"))


def test_a_live_reader_keeps_its_lock_past_its_lifetime_and_a_dead_ones_lapses(redis_client):
    """The lock is a lease: renewed while its reader reads, so a short lifetime only bounds a dead reader."""
    reads, what = _reads(redis_client, lock_ms=600), f"rpc:1:{uuid.uuid4().hex}"
    lock = f"{NAMESPACE}:shared-read:{what}:lock"
    seen = []

    def slow_read() -> bytes:
        for _ in range(3):
            time.sleep(0.5)
            seen.append(redis_client.get(lock) is not None)
        return b"slow but alive"

    assert reads.read(what, slow_read, deadline=time.monotonic() + 5) == (b"slow but alive", False)
    assert seen == [True, True, True]  # held at 0.5, 1.0 and 1.5 s of a 0.6 s lifetime
    dead = f"rpc:1:{uuid.uuid4().hex}"
    redis_client.set(f"{NAMESPACE}:shared-read:{dead}:lock", "dead-reader", px=600)
    started = time.monotonic()
    assert reads.read(dead, lambda: b"read after the dead one", deadline=started + 5) == (b"read after the dead one",
                                                                                          False)
    assert time.monotonic() - started < 1.5
