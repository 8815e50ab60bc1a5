"""``WorkerMetrics``: Dramatiq's own Prometheus middleware in each worker process, and the metrics
server of each ``dramatiq`` command (see ``actors.services.metrics``)."""

from __future__ import annotations

from dramatiq.middleware import Middleware

import settings as settings_module

from ..services import metrics


class WorkerMetrics(Middleware):
    """Dramatiq's ``Prometheus`` middleware, set up for this project (see ``actors.services.metrics``).

    Dramatiq's middleware reads its directory (``dramatiq_prom_db``) when its module is imported,
    so it is imported and built only in a worker process, after the directory is chosen; this
    middleware passes every hook on to it."""

    def __init__(self):
        self._inner = None

    @property
    def forks(self):
        return [metrics.serve_worker_metrics]

    def after_process_boot(self, broker):
        cfg = settings_module.get()
        directory = metrics.worker_run_directory(cfg)
        metrics.enable(cfg, directory)
        # Imported only now, for the reason in the class docstring.
        import dramatiq.middleware.prometheus as dramatiq_prometheus

        dramatiq_prometheus.DB_PATH = str(directory)  # in case it was imported before the directory was set
        inner = dramatiq_prometheus.Prometheus()
        inner.after_process_boot(broker)
        self._inner = inner

    def _forward(name):  # noqa: N805  (builds the forwarding hooks below)
        def hook(self, broker, *args, **kwargs):
            if self._inner is not None:
                getattr(self._inner, name)(broker, *args, **kwargs)
        hook.__name__ = name
        return hook

    after_worker_shutdown = _forward("after_worker_shutdown")
    after_nack = _forward("after_nack")
    after_enqueue = _forward("after_enqueue")
    before_delay_message = _forward("before_delay_message")
    before_process_message = _forward("before_process_message")
    after_process_message = _forward("after_process_message")
    after_skip_message = _forward("after_skip_message")
    del _forward
