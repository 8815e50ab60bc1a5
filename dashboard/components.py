"""Layout pieces every page uses, so they all look alike: KPI cards, panels, tables, error handling."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence

import psycopg
import psycopg_pool
import redis
from dash import dash_table, dcc, html, no_update

from . import figures

logger = logging.getLogger("dashboard")

GRAPH_CONFIG = {"displaylogo": False, "responsive": True,
                "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"]}

TABLE_STYLE = {
    "style_table": {"overflowX": "auto"},
    "style_cell": {"fontFamily": "inherit", "fontSize": "13px", "padding": "6px 10px", "textAlign": "left",
                   "border": "none", "borderBottom": "1px solid #f1f3f5", "whiteSpace": "nowrap",
                   "overflow": "hidden", "textOverflow": "ellipsis", "maxWidth": "320px"},
    "style_header": {"fontWeight": "600", "backgroundColor": "#f8f9fa", "borderBottom": "1px solid #dee2e6",
                     "color": "#495057"},
    "style_data_conditional": [
        {"if": {"state": "active"}, "backgroundColor": "#e7f5ff", "border": "none"},
        *[{"if": {"filter_query": f'{{{column}}} = "{status}"', "column_id": column},
           "color": figures.STATUS_COLORS[status], "fontWeight": "600"}
          for column in ("status", "last_status", "operation_status") for status in figures.STATUS_COLORS],
    ],
    "css": [{"selector": ".dash-spreadsheet tr:hover td", "rule": "background-color: #f8f9fa;"}],
}


def kpi(label: str, value_id: str, *, hint: str | None = None) -> html.Div:
    return html.Div(className="kpi", title=hint or "", children=[
        html.Div(label, className="kpi-label"),
        html.Div("…", id=value_id, className="kpi-value"),
    ])


def kpi_row(cards: Sequence[html.Div]) -> html.Div:
    return html.Div(list(cards), className="kpi-row")


def panel(*children, title: str | None = None, class_name: str = "") -> html.Section:
    body = ([html.H3(title, className="panel-title")] if title else []) + list(children)
    return html.Section(body, className=f"panel {class_name}".strip())


def graph(graph_id: str, *, height: int | None = None) -> dcc.Loading:
    extra = {"style": {"height": f"{height}px"}} if height else {}
    return dcc.Loading(dcc.Graph(id=graph_id, config=GRAPH_CONFIG, figure=figures.empty_figure("Loading…"), **extra),
                       type="dot", delay_show=400)


def table(table_id: str, columns: Sequence[tuple[str, str]], **kwargs) -> dash_table.DataTable:
    """A DataTable in the dashboard's style; ``columns``: (id, header) pairs."""
    options = {**TABLE_STYLE, **kwargs}
    return dash_table.DataTable(id=table_id, columns=[{"name": name, "id": cid} for cid, name in columns],
                                data=[], **options)


def server_table(table_id: str, columns: Sequence[tuple[str, str]], *, page_size: int = 25,
                 sortable: Sequence[str] = (), **kwargs) -> dash_table.DataTable:
    """A table paginated (and optionally sorted) by the server: the callback gets the page and the sort."""
    cols = [{"name": name, "id": cid, "sortable": cid in sortable} if sortable else {"name": name, "id": cid}
            for cid, name in columns]
    options = {**TABLE_STYLE, "sort_by": [], **kwargs}
    return dash_table.DataTable(
        id=table_id, columns=cols, data=[], page_action="custom", page_current=0, page_size=page_size,
        page_count=1, sort_action="custom" if sortable else "none", sort_mode="single", **options)


#: Most rows a server-side table's page may ask for: the page size comes from the browser.
MAX_PAGE_SIZE = 100
#: Last page a server-side table may ask for (an offset PostgreSQL or Redis would walk to).
MAX_PAGE = 100_000


def page_window(page_current: object, page_size: object, default_size: int) -> tuple[int, int]:
    """``(size, page)`` of a :func:`server_table`'s request, from what the browser sent: whole numbers
    within bounds (``default_size`` and the first page for anything else)."""
    size = page_size if isinstance(page_size, int) and not isinstance(page_size, bool) else default_size
    page = page_current if isinstance(page_current, int) and not isinstance(page_current, bool) else 0
    return min(max(1, size), MAX_PAGE_SIZE), min(max(0, page), MAX_PAGE)


def page_count(total: int, page_size: int) -> int:
    """Pages of a :func:`server_table` holding ``total`` rows (one, even when empty)."""
    return max(1, math.ceil(total / page_size))


def selected_row_id(active_cell: dict | None):
    """The ``id`` of the row of a table's clicked cell, or ``no_update`` when none is."""
    if not active_cell or not active_cell.get("row_id"):
        return no_update
    return active_cell["row_id"]


def field(label: str, control) -> html.Label:
    return html.Label([html.Span(label, className="field-label"), control], className="field")


def notice(text: str, kind: str = "info") -> html.Div:
    return html.Div(text, className=f"notice notice-{kind}")


#: Errors a callback shows as "unavailable" instead of failing: the database or Redis did not
#: answer (in time), or a value on the page could not be read.
UNAVAILABLE = (psycopg.Error, redis.RedisError, OSError, ValueError)


def guarded(fallback: Callable[[str], object]):
    """Decorate a callback body: on an infrastructure error, log it and return ``fallback(reason)``."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except UNAVAILABLE as exc:
                reason = _reason(exc)
                logger.warning("Dashboard callback %s: %s", function.__name__, reason)
                return fallback(reason)
        return wrapper

    return decorate


def _reason(exc: BaseException) -> str:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "the database took too long (DASHBOARD_STATEMENT_TIMEOUT_MS)"
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return "no database connection came free in time (busy or unreachable)"
    if isinstance(exc, psycopg.Error):
        return "the database is unavailable"
    if isinstance(exc, redis.RedisError):
        return "Redis is unavailable"
    if isinstance(exc, ValueError):
        return f"invalid input: {exc}"
    return "a service is unavailable"
