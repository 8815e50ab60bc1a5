"""An outbound rate budget per provider, shared by every worker process through Redis.

Each provider (``rpc``, ``alchemy``, the price API...) gets two token buckets,
requests per second and, for providers that bill compute units (Alchemy),
units per second, plus a *pause*: when a server answers 429 or 503 with
``Retry-After``, the whole provider is paused until then, for every worker,
instead of each worker finding out for itself.  The buckets and the pause live
in one Lua script (``budget.lua``) run atomically on Redis's clock.

Why not Dramatiq's rate limiters: they limit what an *actor* runs (a window
or a bucket of whole actor calls, polled with ``time.sleep``), whereas this
budget is spent per HTTP request, in units that vary by method, inside an
attempt that also runs a deadline.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from importlib import resources
from typing import TypeVar

import redis

from chaindata.base import TransientProviderError
from chaindata.node_errors import RateLimited
from chaindata.retrying import current_deadline

T = TypeVar("T")

# Read as package data, as actors' scripts are (chaindata cannot use actors.redis_backed.scripts: it is above).
_SCRIPT = resources.files(__package__).joinpath("budget.lua").read_text(encoding="utf-8")
#: The shortest wait between two asks of an exhausted bucket, in seconds (a cheap round trip each).
_MIN_POLL_S = 0.005


@dataclasses.dataclass(frozen=True)
class BudgetLimits:
    """``requests_per_s`` and ``units_per_s`` (0: unlimited), bursts of one second's worth by default."""

    requests_per_s: float = 0.0
    units_per_s: float = 0.0

    @property
    def unlimited(self) -> bool:
        return self.requests_per_s <= 0 and self.units_per_s <= 0


class ProviderBudget:
    """The budget of one provider.

    :param client: the Redis shared by the workers.
    :param namespace: key prefix.
    :param provider: the provider's name; each has its own buckets and pause.
    :param limits: its rates.

    :meth:`spend` blocks until the budget allows one more request (or raises
    ``budget_exhausted``, transient, when it would not before the deadline);
    :meth:`pause` stops everyone's requests to the provider for a while.
    """

    def __init__(self, client: redis.Redis, *, namespace: str, provider: str, limits: BudgetLimits):
        self.provider = provider
        self.limits = limits
        self._client = client
        self._script = client.register_script(_SCRIPT)
        base = f"{namespace}:budget:{provider}"
        self._keys = [f"{base}:buckets", f"{base}:paused"]

    def spend(self, units: int = 1, *, deadline: float = float("inf")) -> float:
        """Wait until one request costing ``units`` compute units may go; return the seconds waited.

        :param deadline: a ``time.monotonic()`` past which waiting is pointless; raises
            ``TransientProviderError("budget_exhausted")`` rather than wait beyond it.
        """
        started = time.monotonic()
        while True:
            # A pause applies even to a provider without rates: the server asked for it.
            wait_ms = int(self._script(keys=self._keys, args=[
                "take", self.limits.requests_per_s, max(1.0, self.limits.requests_per_s),
                self.limits.units_per_s, max(float(units), self.limits.units_per_s), units]))
            if wait_ms <= 0:
                return time.monotonic() - started
            wait_s = max(wait_ms / 1000, _MIN_POLL_S)
            if time.monotonic() + wait_s > deadline:
                raise TransientProviderError(
                    "budget_exhausted",
                    f"the {self.provider} provider's rate budget allows no request before the attempt's deadline")
            time.sleep(wait_s)

    def pause(self, seconds: float) -> None:
        """Let no request to the provider go for ``seconds`` (a ``Retry-After``); a longer pause already set stays."""
        if seconds > 0:
            self._script(keys=self._keys, args=["pause", int(seconds * 1000)])

    def paused_for_s(self) -> float:
        """Seconds the provider stays paused (0 if it is not)."""
        return max(0, self._client.pttl(self._keys[1])) / 1000


def send_within_budget(budget: ProviderBudget | None, send: Callable[[], T], units: int = 1) -> T:
    """``send()`` (one HTTP request) once ``budget`` allows it before the attempt's deadline
    (:func:`~chaindata.retrying.current_deadline`); a ``Retry-After`` it is answered with pauses the
    whole provider, for every worker, not only this one.  ``budget`` None: just ``send()``.

    Raises ``budget_exhausted`` (transient) without sending when the budget allows nothing in time.
    """
    if budget is None:
        return send()
    budget.spend(units, deadline=current_deadline())
    try:
        return send()
    except RateLimited as exc:
        if exc.retry_after_s:
            budget.pause(exc.retry_after_s)
        raise
