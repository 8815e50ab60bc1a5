"""The dashboard: a multi-page Dash app on a Flask server (``server``), which ``web`` composes with
the HTTP intake into the web process's WSGI app.

Importing this module checks the access rules first (:mod:`dashboard.access`): it raises
:class:`settings.ConfigError` rather than serve an unprotected dashboard on a public address.
The pages (``dashboard/pages``) share the shell below: navigation, the time range, the
auto-refresh ``dcc.Interval`` and the window being shown.
"""

from __future__ import annotations

import dash
import flask
from dash import ALL, Input, Output, dcc, html

import settings
from actors import logs

from . import access, pages, timerange  # noqa: F401  (pages: the package Dash loads its modules into, below)

cfg = settings.get()
logs.install(cfg)  # the log redaction of secrets, as in every process
access.check_exposure(cfg.dashboard.host, cfg)

server = flask.Flask(__name__)
access.install(server, cfg)

# Dash loads the pages itself, from dashboard/pages (its default pages_folder), as dashboard.pages.*:
# named after the package, not this module, so that the pages' module names are their import names.
app = dash.Dash(
    "dashboard",
    server=server,
    use_pages=True,
    title="portfolio-sync",
    update_title=None,
    suppress_callback_exceptions=True,  # each page's components exist only while it is shown
)

_NAV = [page for page in dash.page_registry.values() if not page.get("hidden")]
#: The auto-refresh period of every page (DASHBOARD_REFRESH_S); read by each page load.
REFRESH_MS = cfg.dashboard.refresh_s * 1000


def layout() -> html.Div:
    return html.Div(className="shell", children=[
        html.Header(className="topbar", children=[
            html.Div([html.Span("portfolio-sync", className="brand-name"), html.Span("sync health", className="brand-sub")],
                     className="brand"),
            html.Nav([dcc.Link(page["name"], href=page["relative_path"], id={"type": "nav", "path": page["path"]},
                               className="nav-link") for page in _NAV], className="nav"),
            html.Div(className="controls", children=[
                dcc.RadioItems(id="time-range", value=timerange.DEFAULT_RANGE, inline=True, className="range-picker",
                               options=[{"label": label, "value": key}
                                        for key, (label, _span, _bucket) in timerange.RANGES.items()],
                               persistence=True, persistence_type="session"),
                html.Span(id="window-note", className="window-note"),
            ]),
        ]),
        dcc.Location(id="url", refresh="callback-nav"),
        dcc.Interval(id="refresh", interval=REFRESH_MS, n_intervals=0),
        html.Main(dash.page_container, className="page"),
    ])


app.layout = layout


@dash.callback(Output({"type": "nav", "path": ALL}, "className"), Input("url", "pathname"))
def highlight_nav(pathname: str | None):
    current = pathname or "/"
    return ["nav-link active" if (page["path"] == current or (page["path"] != "/" and current.startswith(page["path"])))
            else "nav-link" for page in _NAV]


@dash.callback(Output("window-note", "children"), Input("time-range", "value"), Input("refresh", "n_intervals"))
def window_note(range_key: str | None, _n: int | None) -> str:
    window = timerange.window(range_key)
    return f"{window.start:%Y-%m-%d %H:%M} → {window.end:%H:%M} UTC · refreshed {window.end:%H:%M:%S}"
