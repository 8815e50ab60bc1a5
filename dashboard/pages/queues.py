"""Queues, live: depth, delayed, dead-lettered, oldest waiting, in flight, workers, quarantine, scheduler."""

from __future__ import annotations

import dash
import pandas as pd
from dash import Input, Output, callback, html

from actors.redis_backed import inspection
from actors.services import context
from storage import analytics

from .. import figures
from ..components import graph, guarded, kpi, kpi_row, notice, panel, table

dash.register_page(__name__, path="/queues", name="Queues", title="Queues · portfolio-sync", order=3)

QUEUE_COLUMNS = [("queue", "Queue"), ("waiting", "Waiting"), ("in_flight", "In flight"), ("delayed", "Delayed"),
                 ("dead", "Dead letters"), ("oldest", "Oldest waiting"), ("last_dead", "Last dead letter (UTC)")]
WORKER_COLUMNS = [("broker_id", "Broker id"), ("state", "State"), ("last_seen", "Last seen"),
                  ("in_flight", "Messages in flight")]
INFLIGHT_COLUMNS = [("started_at", "Started (UTC)"), ("status", "Status"), ("user_id", "User"),
                    ("wallet_address", "Wallet"), ("priority", "Priority"), ("attempts", "Attempts"),
                    ("worker_id", "Worker"), ("operation_id", "Operation")]
TICK_COLUMNS = [("tick_at", "Tick (UTC)"), ("schedule", "Schedule"), ("stale_count", "Stale"),
                ("requested_count", "Requested"), ("held_back_count", "Held back"), ("backlog", "Backlog"),
                ("duration", "Took"), ("why", "Why")]
QUEUE_KPIS = ("waiting", "in_flight", "delayed", "dead", "quarantined", "workers", "oldest")


def layout(**_query) -> html.Div:
    return html.Div([
        kpi_row([
            kpi("Waiting", "q-kpi-waiting"), kpi("In flight", "q-kpi-in_flight", hint="Fetched by a worker, not acked"),
            kpi("Delayed", "q-kpi-delayed", hint="Retries waiting out their backoff"),
            kpi("Dead letters", "q-kpi-dead"),
            kpi("Quarantined", "q-kpi-quarantined", hint="Undecodable messages set aside by the consumers"),
            kpi("Workers alive", "q-kpi-workers", hint="Broker processes holding messages or heard from within "
                                                      "the heartbeat timeout"),
            kpi("Oldest waiting", "q-kpi-oldest"),
        ]),
        html.Div([panel(table("queues-table", QUEUE_COLUMNS), title="Queues (live from Redis)"),
                  panel(graph("queues-figure"))], className="grid-2"),
        html.Div([
            panel(table("workers-table", WORKER_COLUMNS, page_size=20),
                  html.Div("A worker polls Redis every second or so; a producer (API, scheduler, this dashboard) "
                           "also shows here for a few seconds after it enqueues.", className="hint"),
                  title="Broker processes"),
            panel(html.Div(id="active-summary"), table("inflight-table", INFLIGHT_COLUMNS, page_size=20),
                  title="Operations in progress (audit trail)"),
        ], className="grid-2"),
        panel(html.Div(id="scheduler-note"), graph("scheduler-figure"),
              table("ticks-table", TICK_COLUMNS, page_size=20), title="Scheduler: last ticks"),
    ])


def _queues_unavailable(reason: str):
    return (*("n/a" for _ in QUEUE_KPIS), [], figures.empty_figure(f"Unavailable: {reason}"), [])


@callback(*[Output(f"q-kpi-{name}", "children") for name in QUEUE_KPIS], Output("queues-table", "data"),
          Output("queues-figure", "figure"), Output("workers-table", "data"), Input("refresh", "n_intervals"))
@guarded(_queues_unavailable)
def update_queues(_n: int | None = None):
    broker = context.broker()
    states = inspection.queue_states(broker)
    processes = inspection.broker_processes(broker, [s.queue for s in states])
    quarantined = inspection.quarantined(broker)
    frame = pd.DataFrame([s.__dict__ for s in states])
    ages = [s.oldest_waiting_age_s for s in states if s.oldest_waiting_age_s is not None]
    working = [p for p in processes if p.alive or p.in_flight]
    kpis = (figures.fmt_int(sum(s.waiting for s in states)), figures.fmt_int(sum(s.in_flight for s in states)),
            figures.fmt_int(sum(s.delayed for s in states)), figures.fmt_int(sum(s.dead for s in states)),
            figures.fmt_int(quarantined), figures.fmt_int(len(working)), figures.fmt_age(max(ages) if ages else None))
    rows = [{"queue": s.queue, "waiting": s.waiting, "in_flight": s.in_flight, "delayed": s.delayed, "dead": s.dead,
             "oldest": figures.fmt_age(s.oldest_waiting_age_s),
             "last_dead": figures.fmt_time(pd.Timestamp(s.last_dead_at_ms, unit="ms", tz="UTC"))
             if s.last_dead_at_ms else "–"} for s in states]
    workers = [{"broker_id": p.broker_id, "state": "alive" if p.alive else "silent",
                "last_seen": figures.fmt_age(p.last_seen_s) + " ago", "in_flight": p.in_flight} for p in processes]
    return (*kpis, rows, figures.queues_figure(frame), workers)


@callback(Output("active-summary", "children"), Output("inflight-table", "data"), Input("refresh", "n_intervals"))
@guarded(lambda reason: (notice(f"Unavailable: {reason}", "error"), []))
def update_active(_n: int | None = None):
    active = analytics.active_operations()
    running = analytics.in_flight(limit=50)
    if active.empty:
        summary = notice("No operation is queued, running or retrying.")
    else:
        summary = html.Div([html.Span(f"{r['status']}: {r['operations']:,} (oldest {figures.fmt_time(r['oldest_enqueued_at'])})",
                                      className=f"pill pill-{r['status']}") for r in active.to_dict("records")],
                           className="pills")
    rows = [{"started_at": figures.fmt_time(r["started_at"]), "status": r["status"], "user_id": r["user_id"],
             "wallet_address": r["wallet_address"], "priority": r["priority"], "attempts": r["attempts"],
             "worker_id": r["worker_id"] or "", "operation_id": r["operation_id"]} for r in running.to_dict("records")]
    return summary, rows


@callback(Output("scheduler-note", "children"), Output("scheduler-figure", "figure"), Output("ticks-table", "data"),
          Input("refresh", "n_intervals"))
@guarded(lambda reason: (notice(f"Unavailable: {reason}", "error"), figures.empty_figure("Unavailable"), []))
def update_scheduler(_n: int | None = None):
    ticks = analytics.scheduler_ticks(limit=30)
    if ticks.empty:
        return (notice("No scheduler tick recorded yet (is the Procfile's `scheduler` running?)."),
                figures.scheduler_figure(ticks), [])
    rows = []
    for r in ticks.to_dict("records"):
        took = (r["finished_at"] - r["started_at"]).total_seconds() * 1000 if r["finished_at"] is not None else None
        details = r["details"] or {}
        rows.append({"tick_at": figures.fmt_time(r["tick_at"]), "schedule": r["schedule"],
                     "stale_count": figures.fmt_int(r["stale_count"]),
                     "requested_count": figures.fmt_int(r["requested_count"]),
                     "held_back_count": figures.fmt_int(r["held_back_count"]), "backlog": figures.fmt_int(r["backlog"]),
                     "duration": figures.fmt_ms(took) if took is not None else "running",
                     "why": ", ".join(f"{k}={v}" for k, v in details.items())[:200] if isinstance(details, dict)
                     else str(details)[:200]})
    latest = ticks.iloc[0]
    note = notice(f"Last tick {figures.fmt_time(latest['tick_at'])} ({latest['schedule']}): requested "
                  f"{figures.fmt_int(latest['requested_count'])}, held back {figures.fmt_int(latest['held_back_count'])}.")
    return note, figures.scheduler_figure(ticks), rows
