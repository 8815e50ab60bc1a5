"""The providers' metadata cache: bounded, least recently used out first, entries expire."""

from __future__ import annotations

import time

import pytest

from chaindata.lru import DEFAULT_SIZE, LruCache


def test_it_never_holds_more_than_maxsize_and_drops_the_least_recently_used():
    cache: LruCache[str, int] = LruCache(3)
    cache.put_many({"a": 1, "b": 2, "c": 3})
    assert cache.get_many(["a"]) == {"a": 1}  # a is now the most recently used
    cache.put_many({"d": 4})
    assert len(cache) == 3
    assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "c": 3, "d": 4}  # b, the least recent, went


def test_a_stream_of_new_keys_stays_bounded():
    cache: LruCache[int, int] = LruCache(100)
    for key in range(10_000):
        cache.put_many({key: key})
    assert len(cache) == 100 and cache.get_many(range(9_900, 10_000)) == {k: k for k in range(9_900, 10_000)}


def test_entries_expire_by_their_own_ttl():
    cache: LruCache[str, str] = LruCache()
    cache.put_many({"short": "s", "long": "l"}, ttl_s={"short": 0.05, "long": 60})
    assert cache.get_many(["short", "long"]) == {"short": "s", "long": "l"}
    time.sleep(0.1)
    assert cache.get_many(["short", "long"]) == {"long": "l"} and len(cache) == 1


def test_the_default_size_is_bounded_and_a_size_below_one_is_refused():
    assert LruCache().maxsize == DEFAULT_SIZE < float("inf")
    with pytest.raises(ValueError):
        LruCache(0)
