"""A circuit breaker per provider and chain, shared by every worker through Redis (pybreaker).

After ``CIRCUIT_FAIL_MAX`` consecutive transient failures of one chain's
provider, the circuit opens for ``CIRCUIT_RESET_S``: reads of that chain fail
at once with ``circuit_open`` instead of waiting for a provider that is down,
and an attempt that could read no chain at all is retried when the circuit is
due to let a trial call through, without using up one of its attempts.
Permanent errors (an HTTP 400, say) say nothing of the provider's health and
do not count.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TypeVar

import pybreaker
import redis

from chaindata.base import ProviderError, TransientProviderError

T = TypeVar("T")


class ChainCircuits:
    """Parameters:
      client(redis.Redis): where the breakers' state is shared.
      namespace(str): key prefix.
      provider(str): the provider's name; each provider has its own breakers.
      fail_max(int): consecutive transient failures that open a circuit.
      reset_s(int): how long a circuit stays open before a trial call.
    """

    def __init__(self, client: redis.Redis, *, namespace: str, provider: str, fail_max: int, reset_s: int):
        self.client = client
        self.namespace = namespace
        self.provider = provider
        self.fail_max = fail_max
        self.reset_s = reset_s
        self._breakers: dict[int, tuple[pybreaker.CircuitBreaker, pybreaker.CircuitRedisStorage]] = {}
        self._lock = threading.Lock()

    def _breaker(self, chain_id: int) -> tuple[pybreaker.CircuitBreaker, pybreaker.CircuitRedisStorage]:
        with self._lock:
            found = self._breakers.get(chain_id)
            if found is None:
                storage = pybreaker.CircuitRedisStorage(
                    pybreaker.STATE_CLOSED, self.client,
                    namespace=f"{self.namespace}:circuit:{self.provider}:{chain_id}")
                breaker = pybreaker.CircuitBreaker(
                    fail_max=self.fail_max, reset_timeout=self.reset_s, state_storage=storage,
                    exclude=[lambda exc: isinstance(exc, ProviderError) and not exc.transient],
                    throw_new_error_on_trip=False, name=f"{self.provider}:{chain_id}")
                found = self._breakers[chain_id] = (breaker, storage)
            return found

    def call(self, chain_id: int, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` through the chain's breaker; ``circuit_open`` (transient) while it is open."""
        breaker, _storage = self._breaker(chain_id)
        try:
            return breaker.call(fn, *args)
        except pybreaker.CircuitBreakerError:
            raise TransientProviderError(
                "circuit_open",
                f"chain {chain_id}: the {self.provider} provider failed {self.fail_max} times in a row; "
                f"not called again for {self.seconds_until_trial(chain_id):.0f} s") from None

    def seconds_until_trial(self, chain_id: int) -> float:
        """Seconds until the open circuit of ``chain_id`` lets a trial call through (0 if not open)."""
        breaker, storage = self._breaker(chain_id)
        opened_at = storage.opened_at
        if breaker.current_state != pybreaker.STATE_OPEN or opened_at is None:
            return 0.0
        if opened_at.tzinfo is None:
            opened_at = opened_at.replace(tzinfo=dt.timezone.utc)
        elapsed = (dt.datetime.now(dt.timezone.utc) - opened_at).total_seconds()
        return max(0.0, self.reset_s - elapsed)
