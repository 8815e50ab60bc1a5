"""gunicorn's settings for the web process (the Procfile's ``web``: ``web:application``, the
dashboard and the HTTP intake); gunicorn reads this file from the working directory by itself.

Before it binds anything, gunicorn checks every address it was told to listen on: one that is not
loopback needs the dashboard's login (DASHBOARD_USERNAME / DASHBOARD_PASSWORD) or
DASHBOARD_PROTECTED_ELSEWHERE=true, else gunicorn stops with the reason.  (``dashboard.app``
checks DASHBOARD_HOST itself at import, for servers other than gunicorn.)
"""

# Logs to stderr like the other processes; the access log is left off (it would list every callback).
errorlog = "-"
accesslog = None


def on_starting(server):
    import settings
    from dashboard.access import bind_host, exposure_problem

    try:
        cfg = settings.load()
    except settings.ConfigError as exc:
        raise SystemExit(f"dashboard: configuration error: {exc}") from None
    for bind in server.cfg.bind:
        problem = exposure_problem(bind_host(bind), cfg)
        if problem:
            raise SystemExit(f"dashboard: refusing to start: {problem}")
