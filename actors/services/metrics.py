"""Prometheus metrics: Dramatiq's and the project's, with no per-user or per-wallet label.

**Workers.**  ``actors.middleware.worker_metrics.WorkerMetrics`` (in the worker's middleware when
``METRICS_ENABLED``) turns
each worker process to prometheus_client's multiprocess mode, runs Dramatiq's own ``Prometheus``
middleware inside it (``dramatiq_messages_total``, ``dramatiq_message_errors_total``,
``dramatiq_message_retries_total``, ``dramatiq_message_rejects_total``,
``dramatiq_messages_inprogress``, ``dramatiq_delayed_messages_inprogress``,
``dramatiq_message_duration_milliseconds``), and declares :func:`serve_worker_metrics` as a
Dramatiq *fork*: one process per ``dramatiq`` command, serving every worker process's metrics on
``METRICS_HOST:METRICS_PORT`` (``GET /metrics``).

The processes of one ``dramatiq`` command write their files in a directory of their own,
``METRICS_DIR/worker-<pid of the dramatiq command>``, so a restart starts from clean files; the
metrics server removes the directories of commands that are no longer running when it starts.
(Dramatiq's middleware alone would share one directory, ``dramatiq_prom_db``, across every run
on the machine, and never empty it.)

**The web process** serves its own metrics on ``/metrics`` (see ``api.app``): under
gunicorn its workers share ``METRICS_DIR/web-<pid of the gunicorn master>``; a single-process
server keeps them in memory.

**The project's metrics** (``PROJECT_METRICS`` lists them; README, Metrics) are updated from
:mod:`actors.services.observe`; until :func:`enable` ran in a process (a CLI, a test), updating them does
nothing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import settings as settings_module

from ..redis_backed.inspection import quarantined, queue_states
from . import context

logger = logging.getLogger(__name__)

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, float("inf"))
_CALL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))

#: name -> (type, labels, help).  Every label's values are bounded (statuses, priorities, chain ids,
#: error codes, providers, endpoints); never a user, wallet or operation id.
PROJECT_METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "portfolio_sync_syncs_total": (
        "counter", ("status", "trigger", "priority"), "Operations that reached a final status (succeeded, failed)."),
    "portfolio_sync_sync_errors_total": (
        "counter", ("error_code",), "Failed operations by error code."),
    "portfolio_sync_chain_syncs_total": (
        "counter", ("chain_id", "status"), "Chains of the finished operations, by the chain's result (ok, error)."),
    "portfolio_sync_attempt_duration_seconds": (
        "histogram", ("priority", "status"), "Duration of one attempt, by its outcome (succeeded, failed, retrying)."),
    "portfolio_sync_queue_wait_seconds": (
        "histogram", ("priority",), "From the request to the start of the operation's first attempt."),
    "portfolio_sync_provider_calls_total": (
        "counter", ("provider", "chain_id", "result"), "Chain reads from the provider (balances and prices of one chain), by result (ok, error)."),
    "portfolio_sync_provider_errors_total": (
        "counter", ("provider", "chain_id", "error_code"), "Failed chain reads by error code (circuit_open included)."),
    "portfolio_sync_provider_call_duration_seconds": (
        "histogram", ("provider", "chain_id"), "Duration of a successful chain read."),
    "portfolio_sync_admissions_total": (
        "counter", ("decision",), "Sync requests by admission: accepted (new operation), duplicate (one in flight), cooldown."),
    "portfolio_sync_reconciler_actions_total": (
        "counter", ("action",), "What the reconciler did: recovered (messages of dead workers), requeued, failed_expired, failed_worker_lost."),
    "portfolio_sync_audit_batch_size": (
        "histogram", ("statement",), "Attempts written together by one group-committed audit statement (start_attempt, finish_attempt)."),
    "portfolio_sync_events_total": (
        "counter", ("type", "result"), "Completion events appended to the Redis Stream (result: written, dropped)."),
    "portfolio_sync_http_requests_total": (
        "counter", ("endpoint", "method", "status"), "Requests to the web process's API and health endpoints."),
    "portfolio_sync_http_request_duration_seconds": (
        "histogram", ("endpoint",), "Duration of the web process's API and health requests."),
}
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, float("inf"))
_BUCKETS = {"portfolio_sync_attempt_duration_seconds": _DURATION_BUCKETS,
            "portfolio_sync_audit_batch_size": _BATCH_BUCKETS,
            "portfolio_sync_queue_wait_seconds": _WAIT_BUCKETS,
            "portfolio_sync_provider_call_duration_seconds": _CALL_BUCKETS,
            "portfolio_sync_http_request_duration_seconds": _CALL_BUCKETS}

_lock = threading.Lock()
_metrics: dict[str, object] | None = None
_registry = None  # the in-memory registry, when not in multiprocess mode
_directory: Path | None = None  # this process's multiprocess directory, when in that mode


def base_directory(cfg: settings_module.Settings) -> Path:
    # Not per SYNC_NAMESPACE: run directories are named by pid, unique on the machine, so the removal of
    # ended runs covers every namespace's (a benchmark's throwaway namespace included).
    return Path(cfg.metrics.dir) if cfg.metrics.dir else Path(tempfile.gettempdir()) / "portfolio-sync-metrics"


def run_directory(cfg: settings_module.Settings, role: str, run_pid: int) -> Path:
    """Where the processes of one run (one ``dramatiq`` command, one gunicorn master) write their metrics."""
    return base_directory(cfg) / f"{role}-{run_pid}"


def enable(cfg: settings_module.Settings, directory: Path | None = None) -> None:
    """Create the project's metrics in this process: in multiprocess mode, writing into
    ``directory``, or in memory if ``None``.  Idempotent; must run before anything else in the
    process imports prometheus_client when ``directory`` is given."""
    global _metrics, _registry, _directory
    with _lock:
        if _metrics is not None:
            return
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
            os.environ["dramatiq_prom_db"] = str(directory)
        import prometheus_client
        from prometheus_client import values

        registry = None
        if directory is not None:
            # prometheus_client picks its value class when first imported: force the multiprocess one
            # in case something imported it earlier in this process.
            if getattr(values.ValueClass, "__name__", "") != "MmapedValue":
                values.ValueClass = values.MultiProcessValue()
            _directory = directory
        else:
            registry = _registry = prometheus_client.CollectorRegistry()
        made = {}
        for name, (kind, labels, doc) in PROJECT_METRICS.items():
            if kind == "counter":
                made[name] = prometheus_client.Counter(name, doc, labels, registry=registry)
            else:
                made[name] = prometheus_client.Histogram(name, doc, labels, buckets=_BUCKETS[name], registry=registry)
        _metrics = made


def inc(name: str, amount: float = 1, **labels: object) -> None:
    """Add ``amount`` to the counter ``name`` (a no-op until :func:`enable`)."""
    if _metrics is not None and amount:
        _metrics[name].labels(**{k: str(v) for k, v in labels.items()}).inc(amount)


def observe(name: str, value: float, **labels: object) -> None:
    """Record ``value`` in the histogram ``name`` (a no-op until :func:`enable`)."""
    if _metrics is not None:
        _metrics[name].labels(**{k: str(v) for k, v in labels.items()}).observe(value)


def exposition(extra_collectors: Iterable = ()) -> tuple[bytes, str]:
    """This process's metrics (all processes' of its run, in multiprocess mode), and those of
    ``extra_collectors``, in Prometheus's text format."""
    import prometheus_client
    from prometheus_client import multiprocess

    registry = prometheus_client.CollectorRegistry()  # a fresh one per scrape: scrapes may run at once
    if _directory is not None:
        multiprocess.MultiProcessCollector(registry, path=str(_directory))
    elif _registry is not None:
        registry.register(_Collected(_registry))
    for collector in extra_collectors:
        registry.register(collector)
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST


class _Collected:
    def __init__(self, source):
        self.source = source

    def collect(self):
        return self.source.collect()


def remove_ended_runs(cfg: settings_module.Settings, *, keep: Path | None = None) -> list[Path]:
    """Remove the run directories under ``METRICS_DIR`` whose process is no longer running."""
    removed = []
    base = base_directory(cfg)
    if not base.is_dir():
        return removed
    for path in base.iterdir():
        role, _, pid = path.name.rpartition("-")
        if not path.is_dir() or role not in ("worker", "web") or not (pid.isascii() and pid.isdigit()) or path == keep:
            continue
        if not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dramatiq_command_pid() -> int:
    """The pid of the ``dramatiq`` command whose worker or fork process this is."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getppid()


def worker_run_directory(cfg: settings_module.Settings) -> Path:
    """The run directory of the ``dramatiq`` command whose worker or fork process this is."""
    return run_directory(cfg, "worker", _dramatiq_command_pid())


def serve_worker_metrics() -> int:
    """A Dramatiq fork: serve the metrics of every worker process of this ``dramatiq`` command, and
    the queues' current state, on ``METRICS_HOST:METRICS_PORT`` until the command stops."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    cfg = settings_module.get()
    directory = worker_run_directory(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    for path in remove_ended_runs(cfg, keep=directory):
        logger.info("Removed the metrics of an ended run: %s", path)
    enable(cfg, directory)
    queues = QueueCollector()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.split("?")[0] not in ("/", "/metrics"):
                self.send_error(404)
                return
            body, content_type = exposition([queues])
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            logger.debug(fmt, *args)

    try:
        server = ThreadingHTTPServer((cfg.metrics.host, cfg.metrics.port), Handler)
    except OSError as exc:
        logger.error("The metrics server could not listen on %s:%d (%s); this dramatiq command serves no metrics. "
                     "Give each dramatiq command on a machine its own METRICS_PORT.",
                     cfg.metrics.host, cfg.metrics.port, exc)
        return 1
    logger.info("Serving the workers' metrics on http://%s:%d/metrics", cfg.metrics.host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


class QueueCollector:
    """The queues' state as gauges, read from Redis at each scrape (one pipelined round trip).
    The same for every machine: aggregate with ``max`` across instances."""

    def collect(self):
        # Imported here, as in enable(): prometheus_client must not be imported before the process's
        # multiprocess directory is chosen.
        from prometheus_client.core import GaugeMetricFamily

        messages = GaugeMetricFamily("portfolio_sync_queue_messages", "Messages per queue and state (waiting, "
                                     "in_flight, delayed, dead).", labels=["queue", "state"])
        oldest = GaugeMetricFamily("portfolio_sync_queue_oldest_waiting_seconds",
                                   "Age of the oldest waiting message per queue.", labels=["queue"])
        quarantine = GaugeMetricFamily("portfolio_sync_quarantined_messages", "Undecodable messages in quarantine.")
        up = GaugeMetricFamily("portfolio_sync_redis_up", "1 if Redis answered this scrape's queue reads.")
        try:
            broker = context.broker()
            for state in queue_states(broker):
                for name in ("waiting", "in_flight", "delayed", "dead"):
                    messages.add_metric([state.queue, name], getattr(state, name))
                oldest.add_metric([state.queue], state.oldest_waiting_age_s or 0.0)
            quarantine.add_metric([], quarantined(broker))
            up.add_metric([], 1)
        except Exception as exc:  # Redis away: the scrape still answers, saying so
            logger.warning("Metrics: the queue state could not be read: %s", settings_module.get().redact(str(exc)))
            up.add_metric([], 0)
            yield up
            return
        yield from (messages, oldest, quarantine, up)


def web_directory(cfg: settings_module.Settings) -> Path | None:
    """The web process's multiprocess directory under gunicorn (its workers share it), else ``None``."""
    if "gunicorn" in sys.modules and os.getppid() > 1:
        return run_directory(cfg, "web", os.getppid())
    return None
