"""Deduplication and cooldown, decided atomically in Redis.

Two keys per ``(user_id, wallet)``:

- ``inflight`` holds the id of the operation queued or running for it. It is
  taken with the request and released when the operation reaches a final
  status; its TTL bounds how long a lost operation can block the wallet.
- ``recent`` holds the id of the last successful operation, for the cooldown.

An operation's end (:meth:`Admissions.end`: the wallet freed, the cooldown
started, the completion events appended) is one script guarded by a third,
short-lived key per operation, so it can run any number of times, by anyone who
sees the final audit row, and takes effect once.  Nothing is stranded when the
round trip of the attempt that committed the final status is lost.

The decision (reuse the in-flight operation, honour the cooldown, or accept a
new one) is one Lua script, so racing producers always agree on one operation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from . import scripts
from .redis_clock import RedisClock, monotonic_ms


@dataclasses.dataclass(frozen=True)
class Admission:
    decision: str  # 'accepted', 'duplicate' or 'cooldown'
    operation_id: str


class Admissions:
    """Parameters:
      client(redis.Redis): the Redis holding the keys.
      namespace(str): key prefix.
      inflight_ttl_ms(int): lifetime of an in-flight key (longer than any operation can legitimately take).
      cooldown_s(int): cooldown after a success; 0 disables it.
      deadline_ms(int): how long after it is sent an admission may still be decided: the client's
        socket timeout, after which the caller has given up.  Default 5,000.
      clock(RedisClock): Redis's clock, on which the deadline is set.  Default: one of its own.

    The deadline is a budget, ``deadline_ms`` from the moment of sending, converted to Redis's clock
    (:mod:`actors.redis_backed.redis_clock`) and compared there with Redis's own ``TIME``: a producer
    whose clock is behind or ahead of Redis's is judged by the budget alone, never by the skew.
    """

    def __init__(self, client: redis.Redis, *, namespace: str, inflight_ttl_ms: int, cooldown_s: int,
                 deadline_ms: int = 5000, clock: RedisClock | None = None):
        self.client = client
        self.clock = clock or RedisClock(client)
        self.namespace = namespace
        self.inflight_ttl_ms = inflight_ttl_ms
        self.cooldown_s = cooldown_s
        self.deadline_ms = deadline_ms
        self._admit = client.register_script(scripts.source("admit"))
        self._release = client.register_script(scripts.source("release_admission"))
        self._end = client.register_script(scripts.source("end_operation"))

    def _keys(self, user_id: str, wallet: str) -> list[str]:
        return [f"{self.namespace}:sync:inflight:{user_id}:{wallet}", f"{self.namespace}:sync:recent:{user_id}:{wallet}"]

    def admit_many(self, candidates: Sequence[tuple[str, str, str, bool]]) -> list[Admission]:
        """Decide each ``(user_id, wallet, new_operation_id, force)`` in order, in one round trip
        (one script call per thousand requests)."""
        try:
            return self._admit_many(candidates)
        except _ClockWasWrong:
            # Redis answered in time but judged the deadline passed: the offset to its clock was stale
            # (its clock was stepped).  Nothing was taken; decide again on a fresh reading.
            self.clock.invalidate()
            try:
                return self._admit_many(candidates)
            except _ClockWasWrong as exc:
                raise redis.TimeoutError(str(exc)) from None

    def _admit_many(self, candidates: Sequence[tuple[str, str, str, bool]]) -> list[Admission]:
        pipe = self.client.pipeline(transaction=False)
        pipe.time()  # run just before the scripts: keeps the clock's offset fresh at no extra round trip
        for start in range(0, len(candidates), _ADMIT_CHUNK):
            keys, args = [], [self.inflight_ttl_ms, self.clock.now_ms() + self.deadline_ms]
            for user_id, wallet, operation_id, force in candidates[start:start + _ADMIT_CHUNK]:
                keys += self._keys(user_id, wallet)
                args += [operation_id, "1" if force else "0"]
            scripts.queue(pipe, self._admit, keys=keys, args=args)
        sent = monotonic_ms()
        redis_time, *chunks = scripts.raise_first_error(scripts.execute(pipe))
        received = monotonic_ms()
        self.clock.observe(redis_time[0] * 1000 + redis_time[1] / 1000, sent_ms=sent, received_ms=received)
        if b"expired" in chunks:
            # The whole call is refused: give back what the chunks decided in time took.
            self.give_back([
                candidate[:3] for start, chunk in zip(range(0, len(candidates), _ADMIT_CHUNK), chunks)
                if chunk != b"expired"
                for candidate, decision in zip(candidates[start:start + _ADMIT_CHUNK], chunk.split(b","))
                if decision == b"a"])
            if received - sent < self.deadline_ms:
                raise _ClockWasWrong(f"Redis judged an admission late that it answered in {received - sent:.0f} ms")
            raise redis.TimeoutError(f"Redis decided the admission more than {self.deadline_ms} ms after it was sent "
                                     "(it was stalled)")
        decisions = b",".join(chunks).decode().split(",")
        return [Admission("accepted", candidate[2]) if decision == "a" else Admission(_DECISIONS[decision[0]], decision[1:])
                for candidate, decision in zip(candidates, decisions)]

    def give_back(self, taken: Sequence[tuple[str, str, str]]) -> None:
        """Free the wallets ``(user_id, wallet, operation_id)`` taken for requests that were then refused,
        if Redis answers; otherwise their in-flight keys expire by themselves."""
        if taken:
            try:
                self.release_many(taken)
            except redis.RedisError:
                pass

    def release(self, user_id: str, wallet: str, operation_id: str, *, succeeded: bool,
                pipeline: redis.client.Pipeline | None = None) -> None:
        """The operation reached a final status: free the wallet, and start its cooldown if it succeeded.
        With ``pipeline``, the release is queued there (see :mod:`actors.redis_backed.scripts`) and sent with it."""
        keys, args = self._keys(user_id, wallet), [operation_id, "1" if succeeded else "0", self.cooldown_s]
        if pipeline is None:
            self._release(keys=keys, args=args)
        else:
            scripts.queue(pipeline, self._release, keys=keys, args=args)

    def end(self, user_id: str, wallet: str, operation_id: str, *, succeeded: bool, stream: str,
            events: Sequence[Mapping[str, str]], maxlen: int, pipeline: redis.client.Pipeline) -> None:
        """Queue the end of the final operation ``operation_id`` on ``pipeline``: free the wallet, start
        its cooldown if it ``succeeded``, append ``events`` to ``stream`` (trimmed to about ``maxlen``).
        Idempotent: only its first run starts the cooldown and appends the events; every run frees the
        wallet if it still names the operation.  Read its answer with :func:`ended`."""
        args: list[Any] = [operation_id, "1" if succeeded else "0", self.cooldown_s, self.inflight_ttl_ms,
                           max(0, maxlen)]
        for event in events:
            args.append(len(event))
            for field, value in event.items():
                args += [field, value]
        keys = [*self._keys(user_id, wallet), f"{self.namespace}:sync:ended:{operation_id}", stream]
        scripts.queue(pipeline, self._end, keys=keys, args=args)

    def release_many(self, released: Sequence[tuple[str, str, str]]) -> None:
        """Free the wallets of operations that were accepted but never enqueued (no cooldown)."""
        pipe = self.client.pipeline(transaction=False)
        for user_id, wallet, operation_id in released:
            self.release(user_id, wallet, operation_id, succeeded=False, pipeline=pipe)
        scripts.raise_first_error(scripts.execute(pipe))


def ended(result: Any) -> str | Exception | None:
    """What a queued :meth:`Admissions.end` did, from its pipeline result: ``None`` if it ended the
    operation now (its events appended), ``"already"`` if an earlier run had, or the error that
    made Redis drop the events (the end itself stands)."""
    if isinstance(result, Exception):
        return result
    if result[0] == b"already":
        return "already"
    if isinstance(result[1], bytes) and result[1].startswith(b"dropped: "):
        return redis.ResponseError(result[1][len(b"dropped: "):].decode(errors="replace"))
    return None


class _ClockWasWrong(Exception):
    """Redis refused an admission as late although it answered within the budget."""


#: Requests decided by one script call: a call blocks Redis while it runs.
_ADMIT_CHUNK = 1000

#: The script's letters for a wallet it did not take (``lua/admit.lua``).
_DECISIONS = {"d": "duplicate", "c": "cooldown"}
