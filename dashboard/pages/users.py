"""Users: per-user sync statistics (sorted, filtered and paginated by the server) and a drill-down."""

from __future__ import annotations

import datetime as dt

import dash
from dash import Input, Output, callback, dcc, html

from storage import analytics

from .. import figures, timerange
from ..components import (field, graph, guarded, notice, page_count, page_window, panel, selected_row_id,
                          server_table, table)

dash.register_page(__name__, path="/users", name="Users", title="Users · portfolio-sync", order=1)

COLUMNS = [("user_id", "User"), ("syncs", "Syncs"), ("success_rate", "Success"), ("failed", "Failures"),
           ("last_sync_at", "Last sync (UTC)"), ("last_status", "Last status"), ("avg_duration_ms", "Avg duration"),
           ("p95_duration_ms", "p95 duration"), ("portfolio_value_usd", "Portfolio value"), ("wallets", "Wallets")]
#: Table column -> sort key of storage.analytics.users (the last status sorts by the last sync's time).
SORTS = {cid: cid for cid, _name in COLUMNS if cid in analytics.USER_SORTS} | {"last_status": "last_sync_at"}
PAGE_SIZE = 25

HOLDINGS_COLUMNS = [("chain", "Chain"), ("symbol", "Token"), ("name", "Name"), ("balance", "Balance"),
                    ("price_usd", "Price"), ("value_usd", "Value"), ("wallets", "Wallets"), ("as_of", "As of (UTC)"),
                    ("provider", "Source")]
RECENT_COLUMNS = [("enqueued_at", "Requested (UTC)"), ("status", "Status"), ("duration_ms", "Duration"),
                  ("wallet_address", "Wallet"), ("trigger", "Trigger"), ("attempts", "Attempts"),
                  ("error_code", "Error"), ("operation_id", "Operation")]


def layout(user: str | None = None, **_query) -> html.Div:
    return html.Div([
        panel(
            html.Div([
                field("User id contains", dcc.Input(id="users-filter", type="text", debounce=True,
                                                    placeholder="e.g. user-00", className="input")),
                field("Min. syncs", dcc.Input(id="users-min-syncs", type="number", min=0, step=1, value=0,
                                              debounce=True, className="input input-narrow")),
                field("Success rate ≤ (%)", dcc.Input(id="users-max-rate", type="number", min=0, max=100,
                                                      debounce=True, className="input input-narrow")),
                dcc.Checklist(id="users-failed-only", options=[{"label": " only users with failures",
                                                                "value": "yes"}],
                              value=[], className="checkbox"),
                html.Span(id="users-count", className="count"),
            ], className="filters"),
            server_table("users-table", COLUMNS, page_size=PAGE_SIZE, sortable=list(SORTS),
                         sort_by=[{"column_id": "syncs", "direction": "desc"}]),
            html.Div([html.Span(id="users-range"), " Sorting by p95 duration or portfolio value orders the page "
                      "shown (the users with most syncs), not all users. Click a row to see that user below."],
                     className="hint"),
            title="Users",
        ),
        panel(
            html.Div([field("User id", dcc.Input(id="user-id", type="text", value=user or "", debounce=True,
                                                 placeholder="exact user id", className="input input-wide"))],
                     className="filters"),
            html.Div(id="user-summary"),
            html.Div([panel(graph("user-timeline")), panel(graph("user-values"))], className="grid-2"),
            panel(graph("user-holdings")),
            panel(table("user-holdings-table", HOLDINGS_COLUMNS, page_size=50), title="Current holdings"),
            panel(table("user-recent", RECENT_COLUMNS, page_size=20), title="Latest operations"),
            title="User drill-down",
        ),
    ])


def _users_unavailable(reason: str):
    return [], 1, f"unavailable: {reason}"


@callback(
    Output("users-table", "data"), Output("users-table", "page_count"), Output("users-count", "children"),
    Input("time-range", "value"), Input("refresh", "n_intervals"), Input("users-filter", "value"),
    Input("users-min-syncs", "value"), Input("users-max-rate", "value"), Input("users-failed-only", "value"),
    Input("users-table", "page_current"), Input("users-table", "page_size"), Input("users-table", "sort_by"),
)
@guarded(_users_unavailable)
def update_users(range_key: str | None, _n: int | None, user_filter: str | None, min_syncs, max_rate,
                 failed_only, page_current: int | None, page_size: int | None, sort_by: list | None):
    sort, descending = "syncs", True
    if sort_by:
        sort = SORTS.get(sort_by[0].get("column_id"), "syncs")
        descending = sort_by[0].get("direction") != "asc"
    size, page = page_window(page_current, page_size, PAGE_SIZE)
    max_success_rate = None
    if max_rate is not None and str(max_rate) != "":
        max_success_rate = min(max(float(max_rate), 0.0), 100.0) / 100.0
    frame, total = analytics.users(
        timerange.window(range_key), user_filter=(user_filter or "").strip() or None,
        min_syncs=int(min_syncs or 0), max_success_rate=max_success_rate, failed_only=bool(failed_only),
        sort=sort, descending=descending, limit=size, offset=page * size)
    rows = [{
        "id": r["user_id"], "user_id": r["user_id"], "syncs": figures.fmt_int(r["syncs"]),
        "success_rate": figures.fmt_pct(r["success_rate"]), "failed": figures.fmt_int(r["failed"]),
        "last_sync_at": figures.fmt_time(r["last_sync_at"]), "last_status": r["last_status"] or "–",
        "avg_duration_ms": figures.fmt_ms(r["avg_duration_ms"]), "p95_duration_ms": figures.fmt_ms(r["p95_duration_ms"]),
        "portfolio_value_usd": figures.fmt_usd(r["portfolio_value_usd"]), "wallets": figures.fmt_int(r["wallets"]),
    } for r in frame.to_dict("records")]
    return rows, page_count(total, size), f"{total:,} users"


@callback(Output("users-range", "children"), Input("time-range", "value"), Input("refresh", "n_intervals"))
def users_range(range_key: str | None, _n: int | None) -> str:
    """The window the table counts: whole UTC days for ranges of a day or more (storage.analytics.users_window)."""
    window = timerange.window(range_key)
    shown = analytics.users_window(window)
    if shown == window:
        return f"Operations requested {figures.fmt_time(shown.start)} – {figures.fmt_time(shown.end)} UTC."
    days = window.span // dt.timedelta(days=1)
    return (f"The last {days} closed UTC day{'s' if days > 1 else ''} and today so far: operations requested since "
            f"{shown.start:%Y-%m-%d} 00:00 UTC.")


@callback(Output("users-table", "page_current"), Input("users-filter", "value"), Input("users-min-syncs", "value"),
          Input("users-max-rate", "value"), Input("users-failed-only", "value"), prevent_initial_call=True)
def back_to_first_page(*_filters) -> int:
    """A filter changed: show the first page of what it finds."""
    return 0


@callback(Output("user-id", "value"), Input("users-table", "active_cell"), prevent_initial_call=True)
def select_user(active_cell: dict | None):
    return selected_row_id(active_cell)


def _user_unavailable(reason: str):
    empty = figures.empty_figure(f"Unavailable: {reason}")
    return notice(f"Unavailable: {reason}", "error"), empty, empty, empty, [], []


@callback(
    Output("user-summary", "children"), Output("user-timeline", "figure"), Output("user-values", "figure"),
    Output("user-holdings", "figure"), Output("user-holdings-table", "data"), Output("user-recent", "data"),
    Input("time-range", "value"), Input("refresh", "n_intervals"), Input("user-id", "value"),
)
@guarded(_user_unavailable)
def update_user(range_key: str | None, _n: int | None, user_id: str | None):
    user_id = (user_id or "").strip()
    if not user_id:
        empty = figures.empty_figure("Pick a user in the table above, or type a user id")
        return notice("No user selected."), empty, empty, empty, [], []
    window = analytics.users_window(timerange.window(range_key))  # the table's window: its figures match
    summary = analytics.user_summary(window, user_id).iloc[0]
    timeline = analytics.user_timeline(window, user_id)
    values = analytics.user_values(window, user_id)
    holdings = analytics.user_holdings(user_id)
    cards = html.Div([
        _card("Syncs", figures.fmt_int(summary["syncs"])),
        _card("Success rate", figures.fmt_pct(summary["success_rate"])),
        _card("Failures", figures.fmt_int(summary["failed"])),
        _card("Duration p50 / p95", f"{figures.fmt_ms(summary['duration_p50_ms'])} / "
                                    f"{figures.fmt_ms(summary['duration_p95_ms'])}"),
        _card("Last sync (UTC)", figures.fmt_time(summary["last_sync_at"])),
        _card("Portfolio value", figures.fmt_usd(summary["portfolio_value_usd"])),
        _card("Wallets", figures.fmt_int(summary["wallets"])),
    ], className="kpi-row", id="user-cards")
    holding_rows = [{
        "chain": figures.chain_label(h["chain_id"]), "symbol": h["symbol"], "name": h["name"],
        # NaN: a token whose decimals() could not be read has its integer balance only, never valued.
        "balance": f"{h['balance']:,.6f}" if h["balance"] == h["balance"] else "unknown decimals", "price_usd": figures.fmt_usd(h["price_usd"]),
        "value_usd": figures.fmt_usd(h["value_usd"]) if not h["unpriced"] else "unpriced",
        "wallets": h["wallets"], "as_of": figures.fmt_time(h["as_of"]), "provider": h["provider"],
    } for h in holdings.to_dict("records")]
    recent = [{
        "enqueued_at": figures.fmt_time(r["enqueued_at"]), "status": r["status"],
        "duration_ms": figures.fmt_ms(r["duration_ms"]), "wallet_address": r["wallet_address"],
        "trigger": r["trigger"], "attempts": r["attempts"], "error_code": r["error_code"] or "",
        "operation_id": r["operation_id"],
    } for r in timeline.head(20).to_dict("records")]
    return (cards, figures.user_timeline_figure(timeline), figures.user_value_figure(values),
            figures.user_holdings_figure(holdings), holding_rows, recent)


def _card(label: str, value: str) -> html.Div:
    return html.Div([html.Div(label, className="kpi-label"), html.Div(value, className="kpi-value")], className="kpi")
