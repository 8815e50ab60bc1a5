"""Proposal: a shorter GIL switch interval in the worker (``sys.setswitchinterval(0.001)``, default 5 ms).

A worker thread whose Redis or PostgreSQL answer has arrived waits for the GIL; a thread computing
(pricing, the simulated provider, a digest) keeps it up to the switch interval.  A sync makes several
such round trips, and at 100 ms provider latency the worker's syncs run at about 0.8 of the ideal
(16 in flight / 100 ms) while their own duration is ~110 ms: the rest is between them.

Worker module (``dramatiq bench.proposals.switch_interval``; ``bench.run_all --variant switch1ms``).
Measured and not adopted (docs/performance.md): less CPU a sync at 0 ms provider latency, none at 100 ms.
"""

from __future__ import annotations

import sys

sys.setswitchinterval(0.001)

import actors.worker  # noqa: E402,F401  (the broker and the actors, as `dramatiq actors.worker` loads them)
