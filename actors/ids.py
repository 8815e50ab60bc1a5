"""UUIDs as canonical strings, made in bulk.

An accepted request needs three: its operation id, the Redis id of its message and the message's
own id.  ``str(uuid.uuid4())`` builds each through a ``UUID`` object and an int, about as long as
the rest of a request's Python path; here one ``os.urandom`` call gives the bits of a whole
batch, formatted straight from hex.

Operation ids are version 7 (:func:`uuid7_strings`): their first 48 bits are the producer's clock
when the request was admitted, a moment before PostgreSQL stamps the row's ``enqueued_at``, which
partitions the audit trail.  storage.operations reads that time back to name the partitions a lookup
by id needs (docs/capacity.md).
"""

from __future__ import annotations

import os
import time

# RFC 4122's variant: the two top bits of the 17th hex digit are 10, i.e. it is one of 8, 9, a, b.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def uuid4_strings(n: int) -> list[str]:
    """``n`` random UUIDs (version 4, 122 random bits each) in the form of ``str(uuid.uuid4())``."""
    digits = os.urandom(16 * n).hex()
    variant = _VARIANT
    return [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:]}"
            for h in (digits[i:i + 32] for i in range(0, 32 * n, 32))]


def uuid4_string() -> str:
    """One random UUID, as :func:`uuid4_strings` makes them."""
    return uuid4_strings(1)[0]


def uuid7_strings(n: int) -> list[str]:
    """``n`` time-ordered UUIDs (version 7, RFC 9562): this host's clock in milliseconds, then 74 random
    bits, in the form of ``str(uuid.UUID(...))``.  The ids of one batch share their millisecond; the
    random bits alone keep them apart (no counter: nothing here needs an order within a millisecond)."""
    ms = f"{int(time.time() * 1000):012x}"
    digits = os.urandom(10 * n).hex()  # 20 hex digits an id, 19 used: 18 whole and 2 bits under the variant
    variant = _VARIANT
    return [f"{ms[:8]}-{ms[8:]}-7{h[:3]}-{variant[h[3]]}{h[4:7]}-{h[7:19]}"
            for h in (digits[i:i + 20] for i in range(0, 20 * n, 20))]
