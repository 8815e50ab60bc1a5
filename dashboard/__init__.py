"""The Dash dashboard: sync analytics, per-user statistics, live queue state and dead letters.

``dashboard.app`` builds the app (``server`` is the WSGI entry point); ``dashboard.figures``
holds the charts as pure functions of DataFrames; the reads are in ``storage.analytics``
(SQL in ``storage/dashboard.sql``) and, for Redis, ``actors.redis_backed.inspection`` and
``actors.services.deadletters``.
"""
