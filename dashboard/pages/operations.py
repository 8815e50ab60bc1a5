"""Operations: search the audit trail (id, user, wallet, status, error text) and open a full record."""

from __future__ import annotations

import json

import dash
from dash import Input, Output, callback, dcc, html

from storage import analytics

from .. import figures, timerange
from ..components import field, guarded, notice, page_count, page_window, panel, selected_row_id, server_table, table

dash.register_page(__name__, path="/operations", name="Operations", title="Operations · portfolio-sync", order=2)

COLUMNS = [("enqueued_at", "Requested (UTC)"), ("status", "Status"), ("user_id", "User"),
           ("wallet_address", "Wallet"), ("chains", "Chains"), ("priority", "Priority"), ("trigger", "Trigger"),
           ("attempts", "Attempts"), ("duration_ms", "Duration"), ("total_value_usd", "Value"),
           ("error_code", "Error"), ("error_message", "Error message"), ("operation_id", "Operation")]
STATUS_OPTIONS = [{"label": s, "value": s} for s in analytics.STATUSES]
PAGE_SIZE = 25
CHAIN_COLUMNS = [("chain", "Chain"), ("status", "Status"), ("holdings", "Holdings"), ("value_usd", "Value"),
                 ("duration_ms", "Duration"), ("error_code", "Error"), ("error_message", "Error message")]


def layout(user: str | None = None, op: str | None = None, status: str | None = None, **_query) -> html.Div:
    return html.Div([
        panel(
            html.Div([
                field("Operation id", dcc.Input(id="ops-operation-id", type="text", value=op or "", debounce=True,
                                                placeholder="uuid (searched across all time)",
                                                className="input input-wide")),
                field("User id", dcc.Input(id="ops-user", type="text", value=user or "", debounce=True,
                                           placeholder="exact", className="input")),
                field("Wallet", dcc.Input(id="ops-wallet", type="text", debounce=True, placeholder="0x…",
                                          className="input input-wide")),
                field("Status", dcc.Dropdown(id="ops-status", options=STATUS_OPTIONS, multi=True,
                                             value=[status] if status in analytics.STATUSES else [],
                                             placeholder="any", className="dropdown")),
                field("Error text", dcc.Input(id="ops-error", type="text", debounce=True,
                                              placeholder="code or message", className="input")),
                html.Span(id="ops-count", className="count"),
            ], className="filters"),
            server_table("ops-table", COLUMNS, page_size=PAGE_SIZE),
            html.Div("Click a row to open the operation's full record.", className="hint"),
            title="Operations",
        ),
        dcc.Store(id="ops-selected", data=op or None),
        panel(html.Div(id="ops-record", children=notice("No operation selected.")), title="Operation record"),
    ])


def _search_unavailable(reason: str):
    return [], 1, f"unavailable: {reason}"


@callback(
    Output("ops-table", "data"), Output("ops-table", "page_count"), Output("ops-count", "children"),
    Input("time-range", "value"), Input("refresh", "n_intervals"), Input("ops-operation-id", "value"),
    Input("ops-user", "value"), Input("ops-wallet", "value"), Input("ops-status", "value"),
    Input("ops-error", "value"), Input("ops-table", "page_current"), Input("ops-table", "page_size"),
)
@guarded(_search_unavailable)
def search(range_key: str | None, _n: int | None, operation_id: str | None, user_id: str | None,
           wallet: str | None, statuses: list | None, error_text: str | None, page_current: int | None,
           page_size: int | None):
    operation_id = (operation_id or "").strip()
    if operation_id and analytics.parse_uuid(operation_id) is None:
        return [], 1, "not an operation id (a UUID)"
    query = analytics.OperationSearch(
        operation_id=operation_id or None, user_id=(user_id or "").strip() or None,
        wallet=(wallet or "").strip() or None,
        statuses=tuple(s for s in (statuses or []) if s in analytics.STATUSES),
        error_text=(error_text or "").strip() or None)
    size, page = page_window(page_current, page_size, PAGE_SIZE)
    frame, total = analytics.search_operations(timerange.window(range_key), query, limit=size, offset=page * size)
    rows = [{
        "id": r["operation_id"], "operation_id": r["operation_id"], "enqueued_at": figures.fmt_time(r["enqueued_at"]),
        "status": r["status"], "user_id": r["user_id"], "wallet_address": r["wallet_address"],
        "chains": ",".join(str(c) for c in r["chain_ids"]), "priority": r["priority"], "trigger": r["trigger"],
        "attempts": r["attempts"], "duration_ms": figures.fmt_ms(r["duration_ms"]),
        "total_value_usd": figures.fmt_usd(r["total_value_usd"]), "error_code": r["error_code"] or "",
        "error_message": r["error_message"] or "",
    } for r in frame.to_dict("records")]
    if total > analytics.SEARCH_COUNT_LIMIT:
        return (rows, page_count(analytics.SEARCH_COUNT_LIMIT, size),
                f"more than {analytics.SEARCH_COUNT_LIMIT:,} operations (the first {analytics.SEARCH_COUNT_LIMIT:,} "
                "are paged; narrow the search or the range for the rest)")
    return rows, page_count(total, size), f"{total:,} operations"


@callback(Output("ops-table", "page_current"), Input("ops-operation-id", "value"), Input("ops-user", "value"),
          Input("ops-wallet", "value"), Input("ops-status", "value"), Input("ops-error", "value"),
          prevent_initial_call=True)
def back_to_first_page(*_filters) -> int:
    """A filter changed: show the first page of what it finds."""
    return 0


@callback(Output("ops-selected", "data"), Input("ops-table", "active_cell"), prevent_initial_call=True)
def select_operation(active_cell: dict | None):
    return selected_row_id(active_cell)


@callback(Output("ops-record", "children"), Input("ops-selected", "data"))
@guarded(lambda reason: notice(f"Unavailable: {reason}", "error"))
def show_record(operation_id: str | None):
    if not operation_id:
        return notice("No operation selected.")
    record = analytics.operation(operation_id)
    if record is None:
        return notice(f"No operation {operation_id}.", "warning")
    return render_record(record)


def render_record(record: dict) -> html.Div:
    """An operation's full record: its fields, then its per-chain results."""
    shown = {k: v for k, v in record.items() if k != "chain_results"}
    rows = []
    for key, value in shown.items():
        if key in ("enqueued_at", "started_at", "finished_at"):
            value = figures.fmt_time(value)
        elif key in ("queue_wait_ms", "duration_ms"):
            value = figures.fmt_ms(value)
        elif key == "total_value_usd":
            value = figures.fmt_usd(value)
        elif isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        rows.append(html.Tr([html.Th(key), html.Td("–" if value is None or value == "" else str(value))]))
    chain_rows = []
    for chain_id, result in sorted((record.get("chain_results") or {}).items(), key=lambda kv: _int(kv[0])):
        result = result if isinstance(result, dict) else {"status": json.dumps(result)}
        chain_rows.append({
            "chain": figures.chain_label(_int(chain_id)), "status": result.get("status", ""),
            "holdings": result.get("holdings", ""),
            "value_usd": figures.fmt_usd(result["value_usd"]) if result.get("value_usd") is not None else "",
            "duration_ms": figures.fmt_ms(result.get("duration_ms")), "error_code": result.get("error_code", ""),
            "error_message": result.get("error_message", ""),
        })
    return html.Div([
        html.Table(html.Tbody(rows), className="record", id="ops-record-table"),
        html.H4("Per chain", className="subtitle"),
        _chains_table(chain_rows),
    ])


def _chains_table(rows: list[dict]):
    chains = table("ops-record-chains", CHAIN_COLUMNS, page_size=20)
    chains.data = rows
    return chains


def _int(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0
