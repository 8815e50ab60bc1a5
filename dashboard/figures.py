"""Every chart of the dashboard, as a pure function of a DataFrame (and nothing else).

The frames are the ones :mod:`storage.analytics` returns: already aggregated
in PostgreSQL.  A builder never queries, never reads the clock and never
mutates its input; an empty frame gives a figure that says so.  The number
formatters used by the KPI cards and tables live here too.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from chaindata.chains import chain_label as _chain_name

STATUS_COLORS = {"succeeded": "#2b8a3e", "partial": "#a9e34b", "failed": "#e03131", "retrying": "#f08c00", "running": "#1971c2",
                 "queued": "#868e96"}
STATUS_ORDER = ("succeeded", "partial", "failed", "retrying", "running", "queued")
SERIES_COLORS = ("#1971c2", "#f08c00", "#2b8a3e", "#e03131", "#7048e8", "#0c8599", "#d6336c", "#5c940d",
                 "#e8590c", "#495057")

_PORTFOLIO = go.layout.Template(layout=go.Layout(
    font={"family": "Inter, system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12, "color": "#212529"},
    colorway=list(SERIES_COLORS),
    paper_bgcolor="white", plot_bgcolor="white",
    margin={"l": 48, "r": 16, "t": 36, "b": 40},
    xaxis={"gridcolor": "#f1f3f5", "linecolor": "#dee2e6", "zeroline": False},
    yaxis={"gridcolor": "#f1f3f5", "linecolor": "#dee2e6", "zeroline": False},
    legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0, "traceorder": "normal"},
    hoverlabel={"font": {"size": 12}},
    title={"font": {"size": 14}, "x": 0.0, "xanchor": "left"},
))
# Merged once and made the default every figure starts from: a template named as "plotly_white+portfolio"
# is merged again for each figure, 30 ms of every figure's build (most of a drill-down's own time).
pio.templates["portfolio"] = pio.templates.merge_templates("plotly_white", _PORTFOLIO)
pio.templates.default = "portfolio"


def _figure(**layout) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(**layout)
    return fig


def empty_figure(message: str = "No data in this time range", *, title: str | None = None) -> go.Figure:
    fig = _figure(title=title, xaxis={"visible": False}, yaxis={"visible": False}, height=300)
    fig.add_annotation(text=message, showarrow=False, font={"size": 14, "color": "#868e96"},
                       xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


# ------------------------------------------------------------------------------------ overview --

def throughput_figure(frame: pd.DataFrame) -> go.Figure:
    """Stacked bars of operations per time bucket, one trace per status that occurs.

    ``frame``: bucket, status, syncs (every bucket and status, zeros included).
    """
    title = "Syncs over time, by status"
    if frame.empty or frame["syncs"].sum() == 0:
        return empty_figure(title=title)
    fig = _figure(title=title, barmode="stack", height=320, bargap=0.1, yaxis_title="operations",
                  hovermode="x unified")
    for status in STATUS_ORDER:
        part = frame[frame["status"] == status]
        if part.empty or part["syncs"].sum() == 0:
            continue
        fig.add_bar(x=part["bucket"], y=part["syncs"], name=status, marker_color=STATUS_COLORS[status])
    return fig


def duration_figure(frame: pd.DataFrame) -> go.Figure:
    """Distribution of finished operations' durations: bars per duration bin, stacked by status.

    ``frame``: bin, label, status, syncs.
    """
    title = "Sync duration (finished operations)"
    if frame.empty:
        return empty_figure(title=title)
    labels = frame.drop_duplicates("bin").sort_values("bin")["label"].tolist()
    fig = _figure(title=title, barmode="stack", height=320, bargap=0.05, yaxis_title="operations",
                  xaxis={"type": "category", "categoryorder": "array", "categoryarray": labels})
    for status in ("succeeded", "partial", "failed"):
        part = frame[frame["status"] == status].sort_values("bin")
        if not part.empty:
            fig.add_bar(x=part["label"], y=part["syncs"], name=status, marker_color=STATUS_COLORS[status])
    return fig


def failures_figure(frame: pd.DataFrame) -> go.Figure:
    """Failed operations by error code (horizontal bars, most frequent on top).

    ``frame``: error_code, failures, users, last_seen.
    """
    title = "Failures by error code"
    if frame.empty:
        return empty_figure("No failures in this time range", title=title)
    ordered = frame.sort_values("failures")
    fig = _figure(title=title, height=max(240, 60 + 28 * len(ordered)), xaxis_title="failed operations",
                  margin={"l": 170, "r": 16, "t": 36, "b": 40}, showlegend=False)
    fig.add_bar(y=ordered["error_code"], x=ordered["failures"], orientation="h", marker_color=STATUS_COLORS["failed"],
                customdata=list(zip(ordered["users"], ordered["last_seen"].astype(str))),
                hovertemplate="%{y}: %{x} failures<br>%{customdata[0]} users, last %{customdata[1]}<extra></extra>")
    return fig


def trigger_priority_figure(frame: pd.DataFrame) -> go.Figure:
    """Left: operations by trigger, stacked by outcome.  Right: queue wait p50/p95 of each
    trigger and priority (percentiles do not add up, so each pair keeps its own).

    ``frame``: trigger, priority, syncs, succeeded, failed, queue_wait_p50_ms, queue_wait_p95_ms.
    """
    title = "By trigger and priority"
    if frame.empty:
        return empty_figure(title=title)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Syncs by trigger", "Queue wait by trigger · priority (ms)"),
                        horizontal_spacing=0.12)
    fig.update_layout(title=title, barmode="stack", height=360,
                      legend={"y": -0.18, "yanchor": "top", "x": 0.5, "xanchor": "center"})
    by_trigger = frame.groupby("trigger", sort=True)[["syncs", "succeeded", "failed"]].sum()
    other = by_trigger["syncs"] - by_trigger["succeeded"] - by_trigger["failed"]
    for name, values, color in (("succeeded", by_trigger["succeeded"], STATUS_COLORS["succeeded"]),
                                ("failed", by_trigger["failed"], STATUS_COLORS["failed"]),
                                ("in progress", other, STATUS_COLORS["running"])):
        if values.sum() > 0:
            fig.add_bar(x=by_trigger.index.tolist(), y=values.tolist(), name=name, marker_color=color, row=1, col=1)
    pairs = frame.sort_values(["priority", "trigger"])
    labels = [f"{t} · {p}" for t, p in zip(pairs["trigger"], pairs["priority"])]
    fig.add_bar(x=labels, y=pairs["queue_wait_p50_ms"], name="wait p50", marker_color="#74c0fc", row=1, col=2,
                offsetgroup="p50")
    fig.add_bar(x=labels, y=pairs["queue_wait_p95_ms"], name="wait p95", marker_color="#1971c2", row=1, col=2,
                offsetgroup="p95")
    fig.update_xaxes(type="category")
    return fig


def chain_label(chain_id: int) -> str:
    return f"{_chain_name(int(chain_id))} ({int(chain_id)})"


def chains_figure(frame: pd.DataFrame) -> go.Figure:
    """Per chain: success rate of the chain reads (left) and latency p50/p95 of the good ones (right).

    ``frame``: chain_id, reads, ok, errors, success_rate, latency_p50_ms, latency_p95_ms, top_error.
    """
    title = "Per chain"
    if frame.empty:
        return empty_figure(title=title)
    labels = [chain_label(c) for c in frame["chain_id"]]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Success rate of chain reads", "Latency of a chain read (ms)"),
                        horizontal_spacing=0.12)
    fig.update_layout(title=title, height=360, barmode="group",
                      legend={"y": -0.18, "yanchor": "top", "x": 0.5, "xanchor": "center"})
    rates = frame["success_rate"].astype("float64")
    fig.add_bar(x=labels, y=rates, name="success rate", row=1, col=1, showlegend=False,
                marker_color=[STATUS_COLORS["succeeded"] if r >= 0.99 else "#f59f00" if r >= 0.95
                              else STATUS_COLORS["failed"] for r in rates.fillna(1.0)],
                customdata=list(zip(frame["reads"], frame["errors"], frame["top_error"].fillna("–"))),
                hovertemplate="%{x}: %{y:.2%}<br>%{customdata[0]} reads, %{customdata[1]} errors"
                              "<br>commonest error: %{customdata[2]}<extra></extra>")
    fig.update_yaxes(tickformat=".0%", range=[max(0.0, min(0.9, float(rates.min(skipna=True) or 0) - 0.02)), 1.0],
                     row=1, col=1)
    fig.add_bar(x=labels, y=frame["latency_p50_ms"], name="p50", marker_color="#74c0fc", row=1, col=2)
    fig.add_bar(x=labels, y=frame["latency_p95_ms"], name="p95", marker_color="#1971c2", row=1, col=2)
    return fig


# --------------------------------------------------------------------------------------- users --

def user_timeline_figure(frame: pd.DataFrame) -> go.Figure:
    """One point per operation: when it was requested, how long it ran, colored by status.

    ``frame``: operation_id, enqueued_at, status, duration_ms, wallet_address, trigger, error_code.
    """
    title = "Operations (duration, by status)"
    if frame.empty:
        return empty_figure("No operations of this user in this time range", title=title)
    fig = _figure(title=title, height=320, yaxis_title="duration (ms)", yaxis_type="log")
    for status in STATUS_ORDER:
        part = frame[frame["status"] == status]
        if part.empty:
            continue
        # An operation not finished yet has no duration: it sits on the axis.
        durations = part["duration_ms"].astype("float64").fillna(1.0).clip(lower=1.0)
        fig.add_scatter(x=part["enqueued_at"], y=durations, mode="markers", name=status,
                        marker={"color": STATUS_COLORS[status], "size": 7 if status != "succeeded" else 5,
                                "opacity": 0.8},
                        # One array, not a list of tuples: plotly checks a list element by element (30 ms
                        # for a busy user's 2,000 points).
                        customdata=part[["operation_id", "wallet_address", "trigger"]].assign(
                            error_code=part["error_code"].fillna("")).to_numpy(),
                        hovertemplate="%{x}<br>%{y:.0f} ms · %{customdata[2]}<br>%{customdata[1]}"
                                      "<br>%{customdata[0]}<br>%{customdata[3]}<extra>" + status + "</extra>")
    return fig


def short_wallet(wallet: str) -> str:
    return f"{wallet[:6]}…{wallet[-4:]}" if len(wallet) > 12 else wallet


def user_value_figure(frame: pd.DataFrame) -> go.Figure:
    """Portfolio value over time: one line per wallet, a point per successful sync.

    ``frame``: at, wallet_address, total_value_usd.
    """
    title = "Value over time (each successful sync)"
    if frame.empty:
        return empty_figure("No successful sync of this user in this time range", title=title)
    fig = _figure(title=title, height=320, yaxis_title="USD", hovermode="closest")
    for wallet, part in frame.groupby("wallet_address", sort=True):
        part = part.sort_values("at")
        fig.add_scatter(x=part["at"], y=part["total_value_usd"], mode="lines+markers", name=short_wallet(wallet),
                        marker={"size": 4}, line={"width": 1.5},
                        hovertemplate="%{x}<br>$%{y:,.2f}<extra>" + short_wallet(wallet) + "</extra>")
    fig.update_yaxes(tickprefix="$", separatethousands=True)
    return fig


def user_holdings_figure(frame: pd.DataFrame, *, top: int = 8) -> go.Figure:
    """Current value by chain, stacked by token (the ``top`` tokens by value; the rest as "other").

    ``frame``: chain_id, symbol, value_usd (a row per chain and token).
    """
    title = "Holdings now, by chain and token"
    priced = frame[frame["value_usd"].notna()] if not frame.empty else frame
    if priced.empty:
        return empty_figure("No priced holdings", title=title)
    totals = priced.groupby("symbol")["value_usd"].sum().sort_values(ascending=False)
    keep = set(totals.index[:top])
    shown = priced.assign(token=[s if s in keep else "other" for s in priced["symbol"]],
                          chain=[chain_label(c) for c in priced["chain_id"]])
    table = shown.groupby(["token", "chain"], sort=False)["value_usd"].sum().reset_index()
    chains = sorted(table["chain"].unique(), key=lambda c: -table[table["chain"] == c]["value_usd"].sum())
    fig = _figure(title=title, barmode="stack", height=320, yaxis_title="USD",
                  xaxis={"type": "category", "categoryorder": "array", "categoryarray": chains})
    for token in [*totals.index[:top], "other"]:
        part = table[table["token"] == token]
        if not part.empty:
            fig.add_bar(x=part["chain"], y=part["value_usd"], name=token,
                        hovertemplate="%{x}<br>" + token + ": $%{y:,.2f}<extra></extra>")
    fig.update_yaxes(tickprefix="$", separatethousands=True)
    return fig


# -------------------------------------------------------------------------------------- queues --

def queues_figure(frame: pd.DataFrame) -> go.Figure:
    """Messages per queue: waiting, in flight, delayed and dead-lettered (grouped bars).

    ``frame``: queue, waiting, in_flight, delayed, dead.
    """
    title = "Messages per queue"
    if frame.empty:
        return empty_figure("No queues", title=title)
    fig = _figure(title=title, barmode="group", height=300, yaxis_title="messages")
    for column, label, color in (("waiting", "waiting", "#1971c2"), ("in_flight", "in flight", "#2b8a3e"),
                                 ("delayed", "delayed", "#f08c00"), ("dead", "dead-lettered", "#e03131")):
        fig.add_bar(x=frame["queue"], y=frame[column], name=label, marker_color=color)
    fig.update_xaxes(type="category")
    return fig


def scheduler_figure(frame: pd.DataFrame) -> go.Figure:
    """Per tick: syncs requested and stale wallets held back, with the low queue's backlog.

    ``frame``: schedule, tick_at, requested_count, held_back_count, backlog.
    """
    title = "Scheduler ticks"
    if frame.empty:
        return empty_figure("No scheduler tick recorded", title=title)
    ordered = frame.sort_values("tick_at")
    fig = _figure(title=title, barmode="stack", height=280, yaxis_title="wallets", hovermode="x unified")
    fig.add_bar(x=ordered["tick_at"], y=ordered["requested_count"].fillna(0), name="requested",
                marker_color="#1971c2")
    fig.add_bar(x=ordered["tick_at"], y=ordered["held_back_count"].fillna(0), name="held back",
                marker_color="#f08c00")
    fig.add_scatter(x=ordered["tick_at"], y=ordered["backlog"], name="low-queue backlog", mode="lines+markers",
                    line={"color": "#495057", "dash": "dot"})
    return fig


# ---------------------------------------------------------------------------------- formatters --

def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array: not a missing scalar
        return False


def fmt_int(value) -> str:
    return "–" if _missing(value) else f"{int(value):,}"


def fmt_pct(value, digits: int = 1) -> str:
    return "–" if _missing(value) else f"{float(value) * 100:.{digits}f} %"


def fmt_ms(value) -> str:
    if _missing(value):
        return "–"
    value = float(value)
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:,.0f} ms"


def fmt_usd(value) -> str:
    return "–" if _missing(value) else f"${float(value):,.2f}"


def fmt_age(seconds) -> str:
    if _missing(seconds):
        return "–"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def fmt_time(value) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    if _missing(value):
        return "–"
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def overview_kpis(kpis: pd.DataFrame, wallets: pd.DataFrame | None = None) -> dict[str, str]:
    """The overview's KPI cards, formatted: name -> text.

    ``kpis``: one row of :func:`storage.analytics.kpis`; ``wallets``: one row of ``wallets_synced``.
    """
    row = kpis.iloc[0]
    values = {
        "syncs": fmt_int(row["syncs"]), "success_rate": fmt_pct(row["success_rate"]),
        "duration_p50": fmt_ms(row["duration_p50_ms"]), "duration_p95": fmt_ms(row["duration_p95_ms"]),
        "queue_wait_p95": fmt_ms(row["queue_wait_p95_ms"]), "failures": fmt_int(row["failed"]),
        "active": fmt_int(row["active"]),
    }
    if wallets is not None and not wallets.empty:
        values["wallets"] = fmt_int(wallets.iloc[0]["wallets_synced"])
    return values
