"""A circuit breaker per provider and chain, shared by every worker through Redis.

After ``CIRCUIT_FAIL_MAX`` consecutive transient failures of one chain's
provider, the circuit opens for ``CIRCUIT_RESET_S``: reads of that chain fail
at once with ``circuit_open`` instead of waiting for a provider that is down,
and an attempt that could read no chain at all is retried when the circuit is
due to let a call through again, without using up one of its attempts.  The
first call after that is the trial: one more failure reopens the circuit, a
success closes it.  Permanent errors (an HTTP 400, say) say nothing of the
provider's health and do not count.

Why not pybreaker: its ``CircuitBreaker.call`` holds a lock for the whole
call, so the concurrent reads of one chain in a worker process run one after
another (measured here: three 2.5 s reads took 7.5 s).  Two Redis keys and a
Lua script do what is needed, with no lock around the I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis

from chaindata.base import ProviderError, TransientProviderError

from . import scripts

T = TypeVar("T")


class ChainCircuits:
    """Parameters:
      client(redis.Redis): where the circuits' state is shared.
      namespace(str): key prefix.
      provider(str): the provider's name; each provider has its own circuits.
      fail_max(int): consecutive transient failures that open a circuit.
      reset_s(int): how long a circuit stays open before the next call is let through.
    """

    def __init__(self, client: redis.Redis, *, namespace: str, provider: str, fail_max: int, reset_s: int):
        self.client = client
        self.namespace = namespace
        self.provider = provider
        self.fail_max = fail_max
        self.reset_ms = reset_s * 1000
        self._failed = client.register_script(scripts.source("circuit_failed"))

    def _keys(self, chain_id: int) -> list[str]:
        base = f"{self.namespace}:circuit:{self.provider}:{chain_id}"
        return [f"{base}:failures", f"{base}:open"]

    def call(self, chain_id: int, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` unless the chain's circuit is open (then ``circuit_open``, transient)."""
        failures_key, open_key = self._keys(chain_id)
        # One round trip reads both keys: whether the circuit is open, and whether a success must
        # reset a count of failures (most calls follow a success and have nothing to reset).
        pipe = self.client.pipeline(transaction=False)
        pipe.pttl(open_key)
        pipe.exists(failures_key)
        remaining_ms, failures = pipe.execute()
        if remaining_ms > 0:
            raise TransientProviderError(
                "circuit_open",
                f"chain {chain_id}: the {self.provider} provider failed {self.fail_max} times in a row; "
                f"not called again for {remaining_ms / 1000:.0f} s")
        try:
            result = fn(*args)
        except ProviderError as exc:
            if exc.transient:
                self._failed(keys=[failures_key, open_key], args=[self.fail_max, self.reset_ms])
            raise
        if failures:
            self.client.delete(failures_key)
        return result

    def seconds_until_trial(self, chain_id: int) -> float:
        """Seconds until the circuit of ``chain_id`` lets a call through (0 if it is closed)."""
        return max(0, self.client.pttl(self._keys(chain_id)[1])) / 1000
