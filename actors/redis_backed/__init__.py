"""The Redis building blocks: the broker and its consumer, wake-ups, admissions, leases, circuit
breakers, completion events, queue inspection, and the Lua scripts they run (``lua/``).

Each takes its Redis client, namespace and limits as arguments: none reads the settings or
another process-wide object, so each can be used (and tested) alone.  They import only
``actors.constants``, ``settings`` and ``chaindata``'s value types.
"""
