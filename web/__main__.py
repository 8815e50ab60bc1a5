"""``python -m web``: werkzeug's development server on the web process's address."""

from werkzeug.serving import run_simple

import settings

from . import application

cfg = settings.get()
run_simple(cfg.dashboard.host, cfg.dashboard.port, application, threaded=True)
