"""The web process (the Procfile's ``web``): the dashboard and the HTTP intake as one WSGI app.

    gunicorn web:application --bind 127.0.0.1:8050     # the Procfile's `web`
    python -m web                                      # werkzeug's development server, same address

werkzeug's ``DispatcherMiddleware`` sends ``/api/...``, ``/healthz``, ``/readyz`` and ``/metrics``
to the intake's apps (``api.app.mounts``) and every other path to the dashboard's Flask server.
Two apps side by side rather than blueprints of one: each keeps its own access rules, error pages,
body limit and request hooks, and the dashboard's catch-all page route cannot answer an API path.
In front of both, the ``Host`` allow-list (:mod:`api.hosts`).
"""

from __future__ import annotations

from werkzeug.middleware.dispatcher import DispatcherMiddleware

import settings
from api import app as api_app
from api.hosts import HostAllowList
from dashboard import app as dashboard_app


def compose(dashboard, cfg: settings.Settings | None = None) -> HostAllowList:
    """``dashboard`` (a WSGI app) with the intake's endpoints in front of it, both behind the ``Host``
    allow-list (``WEB_ALLOWED_HOSTS``)."""
    cfg = cfg or settings.get()
    return HostAllowList(DispatcherMiddleware(dashboard, api_app.mounts(cfg)), cfg.dashboard.allowed_hosts)


application = compose(dashboard_app.server)

