"""Proposal: fewer round trips per sync in the worker (14 -> 8 for a one-chain sync).

Counted on the shipped worker, a one-chain sync costs 8 Redis round trips (lease SET NX, circuit
PTTL, price MGET, circuit DEL, admission release, events XADD, lease release, ack) and 6 PostgreSQL
ones (BEGIN, UPDATE, COMMIT for start_attempt; BEGIN, the CTE, COMMIT for finish_attempt).  The
worker's CPU per sync is about 10x bare Dramatiq's, most of it client-side protocol work around
those calls.  Here, patched into the worker process only:

- the pool's connections are in autocommit mode (``bench.proposals.autocommit``): each storage
  function is one statement anyway, so it is one round trip instead of three;
- the circuit check reads the open key and the failure counter in one pipelined round trip, and a
  success deletes the counter only if it existed (a success after no failure costs no DEL);
- the end of an attempt (admission release, completion events, lease release) is one pipelined
  round trip, sent when the lease is released (still before the message is acked).

Worker module: ``dramatiq bench.proposals.fewer_round_trips``.
"""

from __future__ import annotations

import threading

from bench.proposals import autocommit  # noqa: F401  (patches the pool first; imports actors)
from actors import events, lifecycle
from actors.admission import Admissions
from actors.circuits import ChainCircuits
from actors.lease import Leases
from chaindata.base import ProviderError, TransientProviderError

_deferred = threading.local()


def _pending():
    return getattr(_deferred, "pipe", None)


_plain_run_attempt = lifecycle._run_attempt


def _run_attempt(op_id: str) -> None:
    from actors import context

    _deferred.pipe = context.leases().client.pipeline(transaction=False)
    _plain_run_attempt(op_id)


_plain_admission_release = Admissions.release


def _admission_release(self, user_id, wallet, operation_id, *, succeeded):
    pipe = _pending()
    if pipe is None:
        return _plain_admission_release(self, user_id, wallet, operation_id, succeeded=succeeded)
    self._release(keys=self._keys(user_id, wallet), args=[operation_id, "1" if succeeded else "0", self.cooldown_s],
                  client=pipe)


_plain_events_append = events.append


def _events_append(client, namespace, built, *, maxlen):
    pipe = _pending()
    if pipe is None:
        return _plain_events_append(client, namespace, built, maxlen=maxlen)
    for event in built:
        pipe.xadd(events.stream_key(namespace), dict(event), maxlen=maxlen, approximate=True)
    return []


def _lease_release(self, operation_id, token):
    with self._lock:
        self._held.pop(operation_id, None)
    pipe, _deferred.pipe = _pending(), None
    if pipe is None:
        self._release(keys=[self.key(operation_id)], args=[token])
        return
    self._release(keys=[self.key(operation_id)], args=[token], client=pipe)
    pipe.execute()


def _circuit_call(self, chain_id, fn, *args):
    failures_key, open_key = self._keys(chain_id)
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


lifecycle._run_attempt = _run_attempt
Admissions.release = _admission_release
events.append = _events_append
Leases.release = _lease_release
ChainCircuits.call = _circuit_call
