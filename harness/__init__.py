"""What the tests and the benchmarks share: servers of their own, free ports, a seeded audit trail.

``tests/`` and ``bench/`` both import this package and never each other.  Like them it is
not shipped (not in the wheel): it runs from a checkout.
"""
