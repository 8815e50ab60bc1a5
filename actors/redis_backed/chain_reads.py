"""A sync's read of one chain in two Redis round trips: one script at its start, one at its end.

A chain read passes three shared gates, each of which used to cost its own round trips: the shared read
(:mod:`.shared_reads`: claim, finish), the chain's circuit breaker (:mod:`.circuits`: enter, record) and
the price cache (an ``MGET``).  Five round trips a chain, 25 for a five-chain sync, and the Redis client
work they cost was the largest share of a worker's CPU.  Here ``lua/chain_read_start.lua`` claims the
shared read and, if this sync is to make it, enters the circuit; ``lua/chain_read_end.lua`` finishes the
shared read, records the circuit's outcome and returns the cached values the answer needs (its
prices).  A read found shared needs no circuit and no end: its cached values take one ``MGET``.  A sync
starts and ends all its chains' reads at once (:mod:`.attempt_reads`, the same per-chain Lua of
``lua/chain_read_lib.lua``); it comes here for a read another sync was making when it started.

Each gate behaves as alone, running the same Lua (``lua/shared_read_lib.lua``, ``lua/circuit_lib.lua``):
the shared read's lock is a lease renewed while the read is made (:meth:`SharedReads.hold`), the
half-open circuit lets exactly one caller through with its token, and a call the provider never saw
(``budget_exhausted``, ``circuit_open``, ``time_limit_exceeded``, or any exception not the provider's)
frees the trial unjudged.  The lock is claimed before the circuit is entered, so a sync that will wait
for another's read never takes the trial; a lock taken for a call the circuit refuses is dropped in the
same script, before anyone saw it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import redis

from chaindata.base import ProviderError

from . import scripts
from .circuits import ChainCircuits
from .shared_reads import SharedReads


#: The Lua a chain read's scripts are sent with, in this order (``lua/chain_read_lib.lua`` calls the others).
LIBRARIES = ("shared_read_lib", "circuit_lib", "chain_read_lib")


@dataclasses.dataclass(frozen=True)
class ChainAnswer:
    """A chain read's answer; ``shared`` if it was another sync's, made within the window; ``cached``, the
    values of the cache keys the answer asked for (None for a missing one)."""

    answer: bytes
    shared: bool
    cached: list[bytes | None]


class ChainReads:
    """Parameters:
      client(redis.Redis): the Redis shared by every worker.
      shared(SharedReads): the shared reads (their window, lock lifetime and lock renewal).
      circuits(ChainCircuits): the provider's circuits.
    """

    def __init__(self, client: redis.Redis, *, shared: SharedReads, circuits: ChainCircuits):
        self.client = client
        self.shared = shared
        self.circuits = circuits
        self._start = client.register_script(scripts.source(*LIBRARIES, "chain_read_start"))
        self._end = client.register_script(scripts.source(*LIBRARIES, "chain_read_end"))
        #: Every chain of an attempt at once (:mod:`.attempt_reads`).
        self.start_all = client.register_script(scripts.source(*LIBRARIES, "chain_reads_start"))
        self.end_all = client.register_script(scripts.source(*LIBRARIES, "chain_reads_end"))

    def read(self, chain_id: int, what: str, read: Callable[[], bytes], *, deadline: float,
             cache_keys: Callable[[bytes], list[str]], held_by: bytes | None = None) -> ChainAnswer:
        """The read of ``chain_id`` named ``what`` (as :meth:`SharedReads.read`): a copy of one made within the
        window, or ``read()``'s answer, made now through the chain's circuit and shared.  ``cache_keys(answer)``
        names the keys whose values come back with it.  Raises ``circuit_open`` if the circuit turns the call
        away, and whatever ``read()`` raises; ``deadline`` is a ``time.monotonic()`` past which this call stops
        waiting for another sync's read and reads for itself.  ``held_by``: the token of the sync found making
        this read already (by :mod:`.attempt_reads`' start), whose read this call first waits for."""
        share = self.shared.window_ms > 0
        key, lock = self.shared.keys(what)
        circuit = self.circuits.keys(chain_id)
        if held_by is not None:
            share = self.shared.wait(lock, held_by, deadline)
        while True:
            token = uuid.uuid4().hex
            kind, value = self._start(keys=[key, lock, *circuit],
                                      args=[token, self.shared.lock_ms, int(share), self.circuits.reset_ms])
            if kind == b"read":
                keys = cache_keys(value)
                return ChainAnswer(value, True, self.client.mget(keys) if keys else [])
            if kind == b"open":
                raise self.circuits.refusal(chain_id, int(value))
            if kind == b"go":
                return self._read_and_end(key, lock, circuit, token, trial=token if value == 1 else "",
                                          share=share, read=read, cache_keys=cache_keys)
            # Another sync is making this read: wait for it, or, past the deadline, read alone (unshared).
            share = self.shared.wait(lock, value, deadline)

    def _read_and_end(self, key: str, lock: str, circuit: list[str], token: str, *, trial: str, share: bool,
                      read: Callable[[], bytes], cache_keys: Callable[[bytes], list[str]]) -> ChainAnswer:
        answer, outcome, keys = None, "release", []
        if share:
            self.shared.hold(lock, token)
        try:
            answer = read()
            outcome = "ok"
            keys = cache_keys(answer)
        except ProviderError as exc:
            outcome = self.circuits.outcome_of(exc, trial)
            raise
        finally:
            if share:
                self.shared.let_go(lock)
            cached = self.end_alone(key, lock, circuit, token, trial=trial, share=share, answer=answer,
                                    outcome=outcome, cache_keys=keys)
        return ChainAnswer(answer, False, cached)

    def end_alone(self, key: str, lock: str, circuit: list[str], token: str, *, trial: str, share: bool,
                  answer: bytes | None, outcome: str, cache_keys: list[str] = ()) -> list[bytes | None]:
        """End the read under ``lock`` that ``token`` made (``lua/chain_read_end.lua``): ``answer`` (None: there is
        none) shared if ``share``, the call's ``outcome`` recorded in the circuit (``trial``: the trial's token
        or ""); returns the values of ``cache_keys``."""
        return self._end(
            keys=[key, lock, f"{lock}:{token}", *circuit, *cache_keys],
            args=[token, int(share), b"" if answer is None else answer, int(answer is not None),
                  self.shared.window_ms, self.shared.lock_ms, outcome, trial, *self.circuits.judging_args()])
