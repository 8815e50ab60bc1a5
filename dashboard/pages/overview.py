"""Overview: is syncing healthy?  KPIs, throughput, durations, failures, triggers and chains."""

from __future__ import annotations

import dash
from dash import Input, Output, callback, html

from storage import analytics

from .. import figures, timerange
from ..components import graph, guarded, kpi, kpi_row, panel

dash.register_page(__name__, path="/", name="Overview", title="Overview · portfolio-sync", order=0)

KPIS = ("syncs", "success_rate", "duration_p50", "duration_p95", "queue_wait_p95", "failures", "active")
_WINDOW = (Input("time-range", "value"), Input("refresh", "n_intervals"))


def layout(**_query) -> html.Div:
    return html.Div([
        kpi_row([
            kpi("Syncs", "kpi-syncs", hint="Operations requested in the window"),
            kpi("Success rate", "kpi-success_rate", hint="Succeeded / (succeeded + failed)"),
            kpi("Duration p50", "kpi-duration_p50", hint="Median duration of the final attempt of finished syncs"),
            kpi("Duration p95", "kpi-duration_p95"),
            kpi("Queue wait p95", "kpi-queue_wait_p95", hint="From request to the start of the first attempt"),
            kpi("Wallets synced", "kpi-wallets", hint="Distinct (user, wallet) with a successful sync"),
            kpi("Failures", "kpi-failures"),
            kpi("In progress", "kpi-active", hint="Queued, running or retrying now"),
        ]),
        panel(graph("overview-throughput")),
        html.Div([panel(graph("overview-durations")), panel(graph("overview-failures"))], className="grid-2"),
        panel(graph("overview-triggers")),
        panel(graph("overview-chains")),
    ])


def _unavailable_kpis(reason: str):
    return tuple("n/a" for _ in KPIS)


@callback(*[Output(f"kpi-{name}", "children") for name in KPIS], *_WINDOW)
@guarded(_unavailable_kpis)
def update_kpis(range_key: str | None, _n: int | None = None):
    values = figures.overview_kpis(analytics.kpis(timerange.window(range_key)))
    return tuple(values[name] for name in KPIS)


@callback(Output("kpi-wallets", "children"), *_WINDOW)
@guarded(lambda reason: "n/a")
def update_wallets(range_key: str | None, _n: int | None = None) -> str:
    return figures.fmt_int(analytics.wallets_synced(timerange.window(range_key)).iloc[0]["wallets_synced"])


def _unavailable_figure(reason: str):
    return figures.empty_figure(f"Unavailable: {reason}")


@callback(Output("overview-throughput", "figure"), *_WINDOW)
@guarded(_unavailable_figure)
def update_throughput(range_key: str | None, _n: int | None = None):
    return figures.throughput_figure(analytics.throughput(timerange.window(range_key)))


@callback(Output("overview-durations", "figure"), *_WINDOW)
@guarded(_unavailable_figure)
def update_durations(range_key: str | None, _n: int | None = None):
    return figures.duration_figure(analytics.duration_histogram(timerange.window(range_key)))


@callback(Output("overview-failures", "figure"), *_WINDOW)
@guarded(_unavailable_figure)
def update_failures(range_key: str | None, _n: int | None = None):
    return figures.failures_figure(analytics.failures_by_error(timerange.window(range_key)))


@callback(Output("overview-triggers", "figure"), *_WINDOW)
@guarded(_unavailable_figure)
def update_triggers(range_key: str | None, _n: int | None = None):
    return figures.trigger_priority_figure(analytics.by_trigger_priority(timerange.window(range_key)))


@callback(Output("overview-chains", "figure"), *_WINDOW)
@guarded(_unavailable_figure)
def update_chains(range_key: str | None, _n: int | None = None):
    frame = analytics.chains(timerange.window(range_key))
    return figures.chains_figure(frame)


#: name -> callback body, for the benchmark and the tests (each takes the range key).
CALLBACKS = {"kpis": update_kpis, "wallets": update_wallets, "throughput": update_throughput,
             "durations": update_durations, "failures": update_failures, "triggers": update_triggers,
             "chains": update_chains}
