"""The project's Dramatiq middleware, one per module.

Each imports only Dramatiq's middleware base and the layers below (``services``,
``redis_backed``, ``constants``), and gets the broker from Dramatiq's hooks: none imports the
composition root, ``actors.worker``, which puts them in order.
"""
