"""Every chain read of one attempt in two Redis round trips: one script at the attempt's start, one at its end.

:mod:`.chain_reads` makes a chain read in two round trips, ten for a five-chain sync, and the Redis client
work of those calls is the largest share of a realistic sync's worker CPU.  Here ``lua/chain_reads_start.lua``
starts every chain of the attempt (its shared read claimed and, if this sync is to make it, its circuit
entered) and ``lua/chain_reads_end.lua`` ends every read the attempt made (the shared read finished, the
circuit's outcome recorded) and returns the cached values (prices) of every chain's answer.  Each chain passes
its gates as it would alone: both scripts run, chain by chain, the functions of ``lua/chain_read_lib.lua``
that the one-chain scripts run.

The reads themselves still run concurrently, one thread per chain (:meth:`AttemptReads.read`); the end waits
for the attempt's reads, and :meth:`AttemptReads.end` is called once they are done or the attempt's deadline
has passed.  Until then a read's lock stays renewed (:meth:`SharedReads.hold`), so the other syncs waiting
for it wait until the attempt's slowest chain is read, not longer than the attempt's deadline.  What does not
fit the batch takes the one-chain path: a chain another sync is reading waits for it and reads alone
(:meth:`ChainReads.read`), and a read still running at the end ends itself when it is done, so its lock,
its waiters and its circuit's trial are never left to expire.  A read that never started (its thread was not
free before the deadline) frees its lock and its trial, unjudged, in the end.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Sequence

from chaindata.base import ProviderError, TransientProviderError

from .chain_reads import ChainAnswer, ChainReads

# What a chain of the attempt is doing, as its thread and the attempt's end see it.
_WAITING = "waiting"  # started in Redis; its thread has not begun
_READING = "reading"  # its thread is reading
_DONE = "done"  # its thread is done: the attempt's end ends it
_LATE = "late"  # its thread was still reading at the attempt's end: it ends the read itself when done
_ALONE = "alone"  # nothing for the attempt's end: turned away, read on the one-chain path, or ended late
_ENDED = "ended"  # ended by the attempt's end


@dataclasses.dataclass
class _Chain:
    chain_id: int
    what: str
    key: str
    lock: str
    circuit: list[str]
    token: str
    kind: bytes  # the start script's verdict: b"read", b"held", b"open" or b"go"
    value: object
    share: bool
    state: str = _WAITING
    answer: bytes | None = None
    outcome: str = "release"  # the provider was not asked (yet): a trial, if this read holds one, goes back
    cache_keys: list[str] = dataclasses.field(default_factory=list)

    @property
    def trial(self) -> str:
        return self.token if self.kind == b"go" and self.value == 1 else ""

    @property
    def makes_read(self) -> bool:
        """Whether this attempt holds the read's lock (if reads are shared) and its circuit's leave."""
        return self.kind == b"go"


class AttemptReads:
    """The chain reads of one attempt: :meth:`start` (one round trip), then :meth:`read` for each chain, on
    its own thread, then :meth:`end` (one round trip) once, from the attempt's thread.

    Parameters:
      reads(ChainReads): the shared reads, circuits and one-chain scripts.
      chains(dict[int, _Chain]): what :meth:`start` found for each chain.
    """

    def __init__(self, reads: ChainReads, chains: dict[int, _Chain]):
        self.reads = reads
        self.chains = chains
        self._lock = threading.Lock()
        self._ended = False

    @classmethod
    def start(cls, reads: ChainReads, names: Sequence[tuple[int, str]]) -> AttemptReads:
        """Start the reads of each ``(chain_id, what)`` of ``names`` (``what`` as :meth:`ChainReads.read`), in one
        round trip."""
        shared = reads.shared
        share = shared.window_ms > 0
        chains, keys, tokens = {}, [], []
        for chain_id, what in names:
            key, lock = shared.keys(what)
            circuit = reads.circuits.keys(chain_id)
            token = uuid.uuid4().hex
            chains[chain_id] = _Chain(chain_id, what, key, lock, circuit, token, b"", None, share)
            keys += [key, lock, *circuit]
            tokens.append(token)
        if chains:
            replies = reads.start_all(keys=keys, args=[shared.lock_ms, int(share), reads.circuits.reset_ms, *tokens])
            for chain, (kind, value) in zip(chains.values(), replies):
                chain.kind, chain.value = kind, value
                if chain.makes_read and share:
                    shared.hold(chain.lock, chain.token)
        return cls(reads, chains)

    def read(self, chain_id: int, read: Callable[[], bytes], *, deadline: float,
             cache_keys: Callable[[bytes], list[str]]) -> ChainAnswer:
        """The read of ``chain_id``, as :meth:`ChainReads.read` makes it; its ``cached`` values are None when
        they come with :meth:`end` (its entry for ``chain_id``)."""
        chain = self.chains[chain_id]
        with self._lock:
            if chain.state == _ENDED:  # the attempt's end came first and freed what this read held
                raise TransientProviderError("time_limit_exceeded", "no answer within SYNC_TIME_LIMIT_MS")
            chain.state = _READING
        if chain.kind == b"open":
            self._finish(chain, alone=True)
            raise self.reads.circuits.refusal(chain_id, int(chain.value))
        if chain.kind == b"held":
            self._finish(chain, alone=True)
            return self.reads.read(chain_id, chain.what, read, deadline=deadline, cache_keys=cache_keys,
                                   held_by=chain.value or None)
        if chain.kind == b"read":
            try:
                chain.cache_keys = cache_keys(chain.value)
            finally:
                self._finish(chain)
            return ChainAnswer(chain.value, True, None)
        try:
            chain.answer = read()
            chain.outcome = "ok"
            chain.cache_keys = cache_keys(chain.answer)
        except ProviderError as exc:
            chain.outcome = self.reads.circuits.outcome_of(exc, chain.trial)
            raise
        finally:
            self._finish(chain)
        return ChainAnswer(chain.answer, False, None)

    def end(self) -> dict[int, list[bytes | None] | Exception]:
        """End, in one round trip, the reads this attempt made and whose thread is done or never began; a read
        still being made ends itself when it is done.  Returns, for each chain whose cached values come
        with the end, those values, or the error that kept them (Redis away).  Called once; later calls (the
        attempt's ``finally``) do nothing."""
        with self._lock:
            if self._ended:
                return {}
            self._ended = True
            ending = []
            for chain in self.chains.values():
                if chain.state in (_WAITING, _DONE):
                    ending.append(chain)
                    chain.state = _ENDED
                elif chain.state == _READING:
                    chain.state = _LATE
        made = [chain for chain in ending if chain.makes_read]
        keys, args = [], []
        for chain in made:
            keys += [chain.key, chain.lock, f"{chain.lock}:{chain.token}", *chain.circuit]
            args += [chain.token, int(chain.share), int(chain.answer is not None), chain.answer or b"",
                     chain.outcome, chain.trial]
        for chain in ending:
            keys += chain.cache_keys
        if not keys:
            return {chain.chain_id: [] for chain in ending}
        shared = self.reads.shared
        try:
            values = self.reads.end_all(keys=keys, args=[len(made), shared.window_ms, shared.lock_ms,
                                                         *self.reads.circuits.judging_args(), *args])
        except Exception as exc:  # handed to each chain, whose result records it as its own end's error would be
            return {chain.chain_id: exc for chain in ending}
        finally:
            for chain in made:
                if chain.share:
                    shared.let_go(chain.lock)
        cached, at = {}, 0
        for chain in ending:
            cached[chain.chain_id] = values[at:at + len(chain.cache_keys)]
            at += len(chain.cache_keys)
        return cached

    def _finish(self, chain: _Chain, *, alone: bool = False) -> None:
        """Called by ``chain``'s thread when its part is over: the attempt's end ends it, unless that end has
        been sent already (the thread ran past the attempt's deadline), in which case it ends itself now."""
        with self._lock:
            late = chain.state == _LATE
            chain.state = _ALONE if alone or late else _DONE
        if late and chain.makes_read:
            try:
                self.reads.end_alone(chain.key, chain.lock, chain.circuit, chain.token, trial=chain.trial,
                                     share=chain.share, answer=chain.answer, outcome=chain.outcome)
            finally:
                if chain.share:
                    self.reads.shared.let_go(chain.lock)
