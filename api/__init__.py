"""The HTTP intake: a service-to-service producer API over ``actors.request_sync``, with the web
process's health, readiness and metrics endpoints.

``api.app`` builds the Flask apps (``mounts`` for the web process, ``create_app`` to serve them
alone); ``api.openapi`` is the OpenAPI document they serve.  The dashboard and this package are
composed into the one WSGI app of the Procfile's ``web`` by ``web``.
"""
