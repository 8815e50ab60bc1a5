"""A small thread-safe LRU cache with an expiry per entry, for the providers' token metadata.

Token metadata is cached per provider for the life of the worker, and airdrop
spam sends wallets an endless stream of new tokens: an unbounded dict would
grow for as long as the worker runs.  The cache keeps the ``maxsize`` entries
used most recently (:data:`DEFAULT_SIZE` unless told).  ``functools.lru_cache``
does not fit: the providers read many keys in one round and cache only some
answers (complete metadata for ever, incomplete for a while).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Entries kept by default: a token's metadata is a few hundred bytes, so some megabytes per provider.
DEFAULT_SIZE = 10_000


class LruCache(Generic[K, V]):
    """Parameters:
      maxsize(int): most entries kept; the least recently used one goes when a new one would pass it.
    """

    def __init__(self, maxsize: int = DEFAULT_SIZE):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()  # value, monotonic time it expires
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The live entries of ``keys`` (an expired one is dropped), each marked as just used."""
        now = time.monotonic()
        found: dict[K, V] = {}
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if entry[1] <= now:
                    del self._entries[key]
                    continue
                self._entries.move_to_end(key)
                found[key] = entry[0]
        return found

    def put_many(self, values: Mapping[K, V], *, ttl_s: float | Mapping[K, float] = float("inf")) -> None:
        """Keep ``values``, each for ``ttl_s`` seconds (one for all, or one per key; default: until evicted)."""
        now = time.monotonic()
        with self._lock:
            for key, value in values.items():
                ttl = ttl_s[key] if isinstance(ttl_s, Mapping) else ttl_s
                self._entries[key] = (value, now + ttl)
                self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
