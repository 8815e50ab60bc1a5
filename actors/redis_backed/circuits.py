"""A circuit breaker per provider and chain, shared by every worker through Redis.

The circuit of a chain *opens* when, over the last ``CIRCUIT_WINDOW_S``
seconds, at least ``CIRCUIT_MIN_CALLS`` calls were made and at least
``CIRCUIT_FAILURE_RATE`` of them failed transiently: a rate over a window,
so a few random errors of a busy, healthy provider never open it, and a
quiet provider is not judged on two calls.  While open (``CIRCUIT_RESET_S``)
reads of that chain fail at once with ``circuit_open``, and an attempt that
could read no chain at all is retried when the circuit is due to let a call
through, without using up one of its attempts.  Then the circuit is
*half-open*: exactly one caller, across all workers, gets the trial (a
Redis ``SET NX`` lease holding the caller's token); the others are turned
away as if it were open.  A trial the provider answered closes the circuit
with a clean window (a permanent error, an HTTP 400 say, is an answer too),
a transient failure reopens it.  A trial whose worker died frees its lease
after ``CIRCUIT_RESET_S``; only the holder's token frees it sooner, so a late
caller whose lease expired never frees or judges another caller's trial.

Only the provider's own failures count.  Permanent errors say nothing of its
health, and errors decided on our side before any request
(:data:`chaindata.retrying.NOT_RETRIED_HERE`: ``budget_exhausted``,
``circuit_open``, ``time_limit_exceeded``) say nothing at all: a busy rate
budget must not open a healthy provider's circuit.  Such a call, if it held
the trial, frees it unjudged for the next caller.

The state is Lua (``lua/circuit_lib.lua``) on Redis's clock; a sync's chain read enters and records its
circuit in the same scripts as its shared read (:mod:`.chain_reads`), :meth:`ChainCircuits.call` with
``lua/circuit.lua``.  Why not
pybreaker: its ``CircuitBreaker.call`` holds a lock for the whole call, so the
concurrent reads of one chain in a worker process run one after another.
"""

from __future__ import annotations

from collections.abc import Callable
import uuid
from typing import TypeVar

import redis

from chaindata.base import ProviderError, TransientProviderError
from chaindata.retrying import NOT_RETRIED_HERE

from . import scripts

T = TypeVar("T")
_TRIAL = -2


class ChainCircuits:
    """Parameters:
      client(redis.Redis): where the circuits' state is shared.
      namespace(str): key prefix.
      provider(str): the provider's name; each provider has its own circuits.
      failure_rate(float): share of transient failures, in the window, that opens a circuit (0 < rate <= 1).
      min_calls(int): fewest calls in the window before the rate is judged.
      window_s(int): the window, in seconds.
      reset_s(int): how long a circuit stays open before one trial call is let through.
    """

    def __init__(self, client: redis.Redis, *, namespace: str, provider: str, failure_rate: float,
                 min_calls: int, window_s: int, reset_s: int):
        if not 0 < failure_rate <= 1 or min_calls < 1 or window_s < 1 or reset_s < 1:
            raise ValueError("failure_rate must be in (0, 1], min_calls, window_s and reset_s at least 1")
        self.client = client
        self.namespace = namespace
        self.provider = provider
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.window_s = window_s
        self.reset_ms = reset_s * 1000
        self._script = client.register_script(scripts.source("circuit_lib", "circuit"))

    def keys(self, chain_id: int) -> list[str]:
        """The Redis keys of ``chain_id``'s circuit, in the order ``lua/circuit_lib.lua`` takes them."""
        base = f"{self.namespace}:circuit:{self.provider}:{chain_id}"
        return [f"{base}:stats", f"{base}:open", f"{base}:tripped", f"{base}:trial"]

    def call(self, chain_id: int, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` unless the chain's circuit turns the call away (then ``circuit_open``, transient)."""
        keys = self.keys(chain_id)
        token = uuid.uuid4().hex
        state = int(self._script(keys=keys, args=["enter", self.reset_ms, token]))
        if state >= 0:
            raise self.refusal(chain_id, state)
        trial = token if state == _TRIAL else ""
        outcome = "release"  # not the provider's fault; free the trial for the next caller
        try:
            result = fn(*args)
            outcome = "ok"
            return result
        except ProviderError as exc:
            outcome = self.outcome_of(exc, trial)
            raise
        finally:
            if outcome == "release":
                if trial:
                    self._script(keys=keys, args=["release", trial])
            elif outcome != "none":
                self._script(keys=keys, args=["record", outcome, trial, *self.judging_args()])

    def refusal(self, chain_id: int, ms_until_trial: int) -> TransientProviderError:
        """The error of a call the circuit of ``chain_id`` turned away, ``ms_until_trial`` before it lets one through."""
        return TransientProviderError(
            "circuit_open",
            f"chain {chain_id}: the {self.provider} provider failed too often "
            f"(>= {self.failure_rate:.0%} of >= {self.min_calls} calls in {self.window_s} s); "
            f"not called again for {ms_until_trial / 1000:.0f} s")

    @staticmethod
    def outcome_of(exc: ProviderError, trial: str) -> str:
        """How a call that raised ``exc`` counts: ``"fail"``, ``"ok"`` (it was the trial and the provider
        answered), ``"release"`` (the provider was not asked: the trial, if it was one, is freed unjudged) or
        ``"none"`` (a permanent error of an ordinary call, which says nothing of the provider's health)."""
        if exc.code in NOT_RETRIED_HERE:  # decided on our side, the provider was not asked
            return "release"
        if exc.transient:
            return "fail"
        return "ok" if trial else "none"  # the provider answered: the trial is over, and it is healthy enough

    def judging_args(self) -> list:
        """What ``circuit_record`` in ``lua/circuit_lib.lua`` judges a circuit by: window s, least calls in it,
        failure rate that opens, open ms."""
        return [self.window_s, self.min_calls, self.failure_rate, self.reset_ms]

    def seconds_until_trial(self, chain_id: int) -> float:
        """Seconds until the circuit of ``chain_id`` may let a call through (0 if it is closed)."""
        _, open_key, _, trial_key = self.keys(chain_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.pttl(open_key)
        pipe.pttl(trial_key)
        return max(0, *pipe.execute()) / 1000
