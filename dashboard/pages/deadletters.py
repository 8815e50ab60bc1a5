"""Dead letters: list with filters, then re-drive one, a selection, or all matching (dry run first).

What re-driving does to each kind of message is in :mod:`actors.services.deadletters`; in short, a sync
whose operation failed is requested again as a new operation (``trigger="redrive"``).
"""

from __future__ import annotations

import datetime as dt

import dash
from dash import Input, Output, State, callback, ctx, dcc, html, no_update

from actors.redis_backed import inspection
from actors.services import context, deadletters

from .. import figures, timerange
from ..components import field, guarded, notice, page_count, page_window, panel, server_table

dash.register_page(__name__, path="/dead-letters", name="Dead letters", title="Dead letters · portfolio-sync", order=4)

COLUMNS = [("dead_at", "Dead since (UTC)"), ("queue", "Queue"), ("actor_name", "Actor"), ("user_id", "User"),
           ("wallet_address", "Wallet"), ("operation_status", "Operation status"), ("error_code", "Error"),
           ("error_message", "Error message"), ("retries", "Retries"), ("operation_id", "Operation"),
           ("redis_id", "Message")]
PAGE_SIZE = 25
_FILTERS = ("dl-queue", "dl-actor", "dl-user", "dl-error-code", "dl-text")


def layout(user: str | None = None, **_query) -> html.Div:
    return html.Div([
        panel(
            html.Div([
                field("Queue", dcc.Dropdown(id="dl-queue", multi=True, placeholder="any", className="dropdown")),
                field("Actor", dcc.Input(id="dl-actor", type="text", debounce=True, placeholder="exact name",
                                         className="input")),
                field("User id", dcc.Input(id="dl-user", type="text", value=user or "", debounce=True,
                                           placeholder="exact", className="input")),
                field("Error code", dcc.Input(id="dl-error-code", type="text", debounce=True, placeholder="exact",
                                              className="input")),
                field("Text", dcc.Input(id="dl-text", type="text", debounce=True,
                                        placeholder="in arguments, traceback, error", className="input")),
                html.Span(id="dl-count", className="count"),
            ], className="filters"),
            html.Div([
                html.Button("Re-drive selected", id="dl-redrive-selected", className="button", n_clicks=0),
                html.Button("Count matching (dry run)", id="dl-dry-run", className="button button-secondary",
                            n_clicks=0),
                html.Button("Re-drive all matching", id="dl-redrive-all", className="button button-danger",
                            n_clicks=0, disabled=True,
                            title="Run the dry run first: it says how many would be re-driven"),
            ], className="actions"),
            html.Div(id="dl-result"),
            server_table("dl-table", COLUMNS, page_size=PAGE_SIZE, row_selectable="multi", selected_row_ids=[]),
            html.Div("Within the time range above (when each message was dead-lettered). Re-driving a failed sync "
                     "requests it again as a new operation (trigger \"redrive\"); other messages go back to their "
                     "queue.", className="hint"),
            title="Dead letters",
        ),
        dcc.Store(id="dl-dry-run-result"),
        dcc.Store(id="dl-version", data=0),
    ])


def current_filter(range_key: str | None, queues, actor, user_id, error_code, text) -> deadletters.DeadLetterFilter:
    window = timerange.window(range_key)
    return deadletters.DeadLetterFilter(
        queues=tuple(queues or ()), actor=(actor or "").strip() or None, user_id=(user_id or "").strip() or None,
        error_code=(error_code or "").strip() or None, text=(text or "").strip() or None,
        since=window.start, until=window.end)


def _list_unavailable(reason: str):
    return [], 1, f"unavailable: {reason}", no_update


@callback(
    Output("dl-table", "data"), Output("dl-table", "page_count"), Output("dl-count", "children"),
    Output("dl-queue", "options"),
    Input("time-range", "value"), Input("refresh", "n_intervals"), Input("dl-version", "data"),
    *[Input(name, "value") for name in _FILTERS],
    Input("dl-table", "page_current"), Input("dl-table", "page_size"),
)
@guarded(_list_unavailable)
def update_list(range_key: str | None, _n: int | None, _version: int | None, queues, actor, user_id, error_code,
                text, page_current: int | None, page_size: int | None):
    broker = context.broker()
    flt = current_filter(range_key, queues, actor, user_id, error_code, text)
    size, page = page_window(page_current, page_size, PAGE_SIZE)
    letters, total = deadletters.list_dead_letters(flt, limit=size, offset=page * size, broker=broker)
    rows = []
    for letter in letters:
        row = letter.summary()
        rows.append({
            "id": f"{letter.queue}|{letter.redis_id}", "dead_at": figures.fmt_time(row["dead_at"]),
            "queue": row["queue"], "actor_name": row["actor_name"], "user_id": row["user_id"] or "",
            "wallet_address": row["wallet_address"] or "", "operation_status": row["operation_status"] or "",
            "error_code": row["error_code"] or "", "error_message": row["error_message"] or "",
            "retries": row["retries"], "operation_id": row["operation_id"] or "", "redis_id": row["redis_id"],
        })
    options = [{"label": q, "value": q} for q in inspection.queue_names(broker)]
    return rows, page_count(total, size), f"{total:,} dead letters", options


@callback(Output("dl-table", "page_current"), *[Input(name, "value") for name in _FILTERS], prevent_initial_call=True)
def back_to_first_page(*_filters) -> int:
    """A filter changed: show the first page of what it finds."""
    return 0


def _refs(row_ids) -> list[tuple[str, str]]:
    refs = []
    for row_id in row_ids or []:
        queue, sep, redis_id = str(row_id).partition("|")
        if sep and queue and redis_id:
            refs.append((queue, redis_id))
    return refs


def describe(report: deadletters.RedriveReport) -> html.Div:
    """What a re-drive did, for a person: counts, then each item."""
    items = []
    for r in report.redriven:
        what = r["how"] + (f": operation {r['operation_id']}" if r.get("operation_id") else "")
        who = f" ({r['user_id']}, {figures.short_wallet(r['wallet_address'])})" if r.get("user_id") else ""
        items.append(html.Li(f"{r['queue']} {r['redis_id'][:8]}… → {what}{who}"))
    for s in report.skipped:
        items.append(html.Li(f"{s['queue']} {s['redis_id'][:8]}… skipped: {s['reason']}", className="skipped"))
    kind = "success" if report.redriven and not report.skipped else "warning" if report.skipped else "info"
    return html.Div([html.Strong(f"Re-driven: {len(report.redriven)}, skipped: {len(report.skipped)}."),
                     html.Ul(items[:50])], className=f"notice notice-{kind}", id="dl-report")


@callback(
    Output("dl-result", "children"), Output("dl-dry-run-result", "data"), Output("dl-redrive-all", "disabled"),
    Output("dl-version", "data"), Output("dl-table", "selected_row_ids"),
    Input("dl-redrive-selected", "n_clicks"), Input("dl-dry-run", "n_clicks"), Input("dl-redrive-all", "n_clicks"),
    Input("time-range", "value"), *[Input(name, "value") for name in _FILTERS],
    State("dl-table", "selected_row_ids"), State("dl-dry-run-result", "data"), State("dl-version", "data"),
    prevent_initial_call=True,
)
@guarded(lambda reason: (notice(f"Unavailable: {reason}", "error"), no_update, no_update, no_update, no_update))
def act(_selected_clicks, _dry_clicks, _all_clicks, range_key, queues, actor, user_id, error_code, text,
        selected_row_ids, dry_run: dict | None, version: int | None):
    """The buttons, and the filters (changing one voids the dry run).

    "Re-drive all matching" re-drives what the dry run counted: the same filters and the same
    time range (as it was when counted), and at most as many as it counted.
    """
    trigger = ctx.triggered_id
    flt = current_filter(range_key, queues, actor, user_id, error_code, text)
    if trigger == "dl-redrive-selected":
        refs = _refs(selected_row_ids)
        if not refs:
            return notice("Select dead letters in the table first.", "warning"), no_update, no_update, no_update, \
                no_update
        return describe(deadletters.redrive(refs)), None, True, (version or 0) + 1, []
    if trigger == "dl-dry-run":
        count = deadletters.count_dead_letters(flt)
        snapshot = {"count": count, "range": range_key, **_snapshot(flt)}
        message = notice(f"{count:,} dead letters match these filters and time range. "
                         + ("Press “Re-drive all matching” to re-drive them." if count else "Nothing to re-drive."),
                         "info")
        return html.Div(message, id="dl-dry-run-message"), snapshot, count == 0, no_update, no_update
    if trigger == "dl-redrive-all":
        if not dry_run or dry_run.get("range") != range_key or any(
                dry_run.get(k) != v for k, v in _snapshot(flt).items() if k not in ("since", "until")):
            return notice("The filters changed since the dry run: run it again.", "warning"), None, True, \
                no_update, no_update
        counted = deadletters.DeadLetterFilter(
            queues=tuple(dry_run["queues"]), actor=dry_run["actor"], user_id=dry_run["user_id"],
            error_code=dry_run["error_code"], text=dry_run["text"],
            since=dt.datetime.fromisoformat(dry_run["since"]), until=dt.datetime.fromisoformat(dry_run["until"]))
        report = deadletters.redrive_matching(counted, limit=int(dry_run["count"]))
        return describe(report), None, True, (version or 0) + 1, []
    # a filter or the time range changed: the dry run no longer describes what would be re-driven
    return no_update, None, True, no_update, no_update


def _snapshot(flt: deadletters.DeadLetterFilter) -> dict:
    return {"queues": sorted(flt.queues), "actor": flt.actor, "user_id": flt.user_id, "error_code": flt.error_code,
            "text": flt.text, "since": flt.since.isoformat(), "until": flt.until.isoformat()}
