"""Every benchmark in one command: the project against bare Dramatiq and BullMQ, on the same Redis.

    .venv/bin/python -m bench.run_all [--quick] [--rounds N] [--jobs N] [--dashboard] [--write-docs]
                                      [--variant NAME ...] [--before COMMIT]

Each round runs every peer measurement in turn, the systems interleaved (their order rotated
each round), so the machine's background load falls on all of them alike; a figure is the median
over the rounds.  Memory, kill -9 recovery, the Redis ceiling and (with ``--dashboard``, a few
minutes more: it seeds 1,000,000 audit rows) the dashboard callbacks run once.
Every measurement is a subprocess of its own (``bench.project``, ``bench.bare_dramatiq``,
``bench/node/bullmq_bench.mjs``) in a namespace (and, for the project, a database) of its own.

Writes ``bench/results/latest.json`` (every run's raw figures, the medians, the machine) and
``bench/results/latest.md``; with ``--write-docs`` also ``docs/performance.md``.

``--variant`` adds a configuration of the project's worker as another column, for a proposal:
``wt100`` (``dramatiq_worker_timeout=100``), ``wt20``, ``threads64`` (2 x 64 threads), the proposals of
``bench/proposals/`` (``asynccommit``: ``synchronous_commit=off`` for the worker; ``nohiredis``: the
worker without hiredis; ``switch1ms``: a 1 ms GIL switch interval in the worker; ``finishbehind``: the
worker thread not waiting for the finish's commit, a ceiling), or any
``NAME=ENV=VALUE[,ENV=VALUE...]`` / ``NAME=module:MODULE`` (a worker module of ``bench/``).

``--before COMMIT`` adds the realistic syncs, the no-op pipeline and the enqueues of another commit's tree as a column, in the same rounds,
interleaved: the tree is taken with ``git archive`` into ``bench/results/``, this tree's ``bench/``
copied over it (the same driver, the other commit's product), and its drivers run from there.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "node"
RESULTS = ROOT / "bench" / "results"
PY = sys.executable

PEERS = ("project", "dramatiq", "bullmq")
#: Provider latencies (ms) of the realistic-sync measurements.
REALISTIC_LATENCIES = (0, 100)
LABELS = {"project": "project", "dramatiq": "bare Dramatiq", "bullmq": "BullMQ"}

#: Ready-made variants of the project's worker (``--variant``).
VARIANTS = {
    "wt100": {"env": {"dramatiq_worker_timeout": "100"}},
    "wt20": {"env": {"dramatiq_worker_timeout": "20"}},
    "threads64": {"threads": 64},
    # bench/proposals: measured changes not (yet) in the product, patched into the benchmark's processes only.
    # (Adopted, once proposals: wakeup, autocommit, fewer_round_trips, batch_enqueue; see docs/performance.md.)
    "asynccommit": {"module": "bench.proposals.async_commit"},
    # The worker without hiredis (redis-py's pure-Python parser and packer), the product's setup before it.
    "nohiredis": {"env": {"PYTHONPATH": "bench/proposals/no_hiredis"}},
    # A 1 ms GIL switch interval in the worker (5 ms by default).
    "switch1ms": {"module": "bench.proposals.switch_interval"},
    # The ceiling of a worker thread that does not wait for the finish's commit (unsafe: a measurement only).
    "finishbehind": {"module": "bench.proposals.finish_behind"},
}


@dataclasses.dataclass
class Settings:
    rounds: int
    jobs: int
    batch: int
    samples: int
    sync_n: int
    priority_low: int
    priority_samples: int
    memory_n: int
    realistic_n: int
    processes: int = 2
    threads: int = 8
    bullmq_concurrency: int = 50
    gap_ms: str = "20-120"

    @classmethod
    def of(cls, quick: bool) -> "Settings":
        if quick:
            return cls(rounds=1, jobs=2000, batch=500, samples=50, sync_n=500, priority_low=10_000,
                       priority_samples=20, memory_n=10_000, realistic_n=600)
        return cls(rounds=3, jobs=3000, batch=500, samples=100, sync_n=1200, priority_low=10_000,
                   priority_samples=30, memory_n=100_000, realistic_n=1500)


# --- running the drivers -----------------------------------------------------------------------------

def run_json(argv: list[str], *, timeout: float = 900, cwd: Path = ROOT, log=None) -> dict:
    """Run a driver; its result is the last JSON line it prints.  Failures become ``{"error": ...}``."""
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if log is not None:
        log.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}\n")
        log.flush()
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["wall_s"] = round(time.monotonic() - started, 2)
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def ensure_node() -> str | None:
    """``node`` with the pinned ``bullmq`` installed (``npm ci`` on first use); ``None`` if unavailable."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node:
        return None
    if not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        if not npm:
            return None
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True)
    return node


def project_cmd(mode: str, variant: dict | None, *extra: str) -> list[str]:
    argv = [PY, "-m", "bench.project", mode, *extra]
    variant = variant or {}
    if "processes" in variant:
        argv += ["--processes", str(variant["processes"])]
    if "threads" in variant:
        argv += ["--threads", str(variant["threads"])]
    if "module" in variant:
        argv += ["--worker-module", variant["module"]]
    if "producer" in variant:
        argv += ["--producer-module", variant["producer"]]
    for name, value in variant.get("env", {}).items():
        argv += ["--env", f"{name}={value}"]
    return argv


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME`` of :data:`VARIANTS`, or ``NAME=ITEM,ITEM...`` with items ``module:M`` (the worker's module),
    ``producer:M`` (imported first in the producing process), ``threads:N`` or ``ENV=VALUE``."""
    if text in VARIANTS:
        return text, VARIANTS[text]
    name, _, spec = text.partition("=")
    if not spec:
        raise SystemExit(f"unknown variant {text!r}: use one of {', '.join(VARIANTS)} or "
                         "NAME=module:M,producer:M,threads:N,ENV=VALUE")
    variant: dict = {}
    for item in spec.split(","):
        key, sep, value = item.partition(":") if ":" in item.split("=", 1)[0] else ("", "", "")
        if sep and key in ("module", "producer", "threads"):
            variant[key] = int(value) if key == "threads" else value
        else:
            env_name, _, env_value = item.partition("=")
            variant.setdefault("env", {})[env_name] = env_value
    return name, variant


def round_steps(s: Settings, node: str | None, variants: dict[str, dict]) -> list[tuple[str, str, list[str], Path]]:
    """One round: (measurement, system, argv, cwd), systems interleaved within each measurement."""
    n, pt = str(s.jobs), ["--processes", str(s.processes), "--threads", str(s.threads)]
    bare = [PY, "-m", "bench.bare_dramatiq"]
    js = [node, "bullmq_bench.mjs"] if node else None
    redis = ["--redis", os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"]
    conc = ["--concurrency", str(s.bullmq_concurrency)]
    steps: list[tuple[str, str, list[str], Path]] = []

    def peers(measurement, project_argv, bare_argv, node_argv, project_modes=True):
        steps.append((measurement, "project", project_argv(None), ROOT))
        for name, variant in variants.items():
            if "only" in variant and measurement not in variant["only"]:
                continue
            # enqueue: only variants with a producer side (a module of theirs, or another commit's tree)
            if project_modes or "producer" in variant or "tree" in variant:
                steps.append((measurement, f"project:{name}", project_argv(variant), variant.get("tree", ROOT)))
        if bare_argv:
            steps.append((measurement, "dramatiq", bare_argv, ROOT))
        if js and node_argv:
            steps.append((measurement, "bullmq", js + node_argv + redis + ["--prefix", f"bench-bullmq-{uuid.uuid4().hex[:10]}"],
                          NODE_DIR))

    peers("enqueue", lambda v: project_cmd("enqueue", v and {k: v[k] for k in ("producer",) if k in v},
                                           "--n", n, "--batch", str(s.batch)),
          bare + ["enqueue", "--n", n, "--batch", str(s.batch)], ["enqueue", "--n", n, "--batch", str(s.batch)],
          project_modes=False)
    peers("noop", lambda v: project_cmd("throughput", v, "--n", n),
          bare + ["throughput", "--n", n, *pt], ["throughput", "--n", n, "--work-ms", "0", *conc])
    peers("work10", lambda v: project_cmd("throughput", v, "--n", n, "--latency-ms", "10"),
          bare + ["throughput", "--n", n, "--work-ms", "10", *pt], ["throughput", "--n", n, "--work-ms", "10", *conc])
    peers("latency", lambda v: project_cmd("latency", v, "--samples", str(s.samples), "--gap-ms", s.gap_ms),
          bare + ["latency", "--samples", str(s.samples), "--gap-ms", s.gap_ms, *pt],
          ["latency", "--samples", str(s.samples), "--gap-ms", s.gap_ms, *conc])
    peers("sync", lambda v: project_cmd("sync", v, "--n", str(s.sync_n)), None, None)
    peers("priority", lambda v: project_cmd("priority", v, "--low", str(s.priority_low),
                                            "--samples", str(s.priority_samples)), None, None)
    for ms in REALISTIC_LATENCIES:
        peers(f"realistic{ms}", lambda v, ms=ms: project_cmd("realistic", v, "--n", str(s.realistic_n),
                                                             "--latency-ms", str(ms)), None, None)
    return steps


def rotate(steps: list, k: int) -> list:
    """The steps of each measurement with their systems' order rotated by ``k`` (the measurements stay in order)."""
    out, i = [], 0
    while i < len(steps):
        j = i
        while j < len(steps) and steps[j][0] == steps[i][0]:
            j += 1
        group = steps[i:j]
        shift = k % len(group)
        out += group[shift:] + group[:shift]
        i = j
    return out


def redis_ceiling() -> dict:
    """Redis's own rate on this machine (``redis-benchmark``, PING only: no key is written)."""
    exe = shutil.which("redis-benchmark")
    if not exe:
        return {"error": "redis-benchmark not found"}
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    base = [exe, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379), "-t", "ping_mbulk", "--csv"]
    out = {}
    for key, extra in (("unpipelined_ops_per_s", ["-n", "50000"]), ("pipelined_16_ops_per_s", ["-n", "200000", "-P", "16"])):
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=120)
        rows = [line.split(",") for line in proc.stdout.splitlines() if line.startswith('"PING')]
        out[key] = float(rows[-1][1].strip('"')) if rows else None
    return out


def dashboard_run(log=None) -> dict:
    """The dashboard work's benchmark (``bench/dashboard_callbacks.py``: 1,000,000 audit rows seeded, every
    callback timed); its text report is read for the worst callback p95 and the whole-page wall times."""
    if not (ROOT / "bench" / "dashboard_callbacks.py").exists():
        return {"skipped": "bench/dashboard_callbacks.py not available"}
    argv = [PY, "-m", "bench.dashboard_callbacks", "--repeat", "5"]
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 1800 s"}
    if log is not None:
        log.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}\n")
    worst = re.search(r"worst p95 of any callback: (\d+) ms", proc.stdout)
    if proc.returncode or not worst:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    pages = [line.strip() for line in proc.stdout.split("whole page", 1)[-1].splitlines()[1:]
             if "callbacks)" in line]
    return {"worst_callback_p95_ms": int(worst.group(1)), "pages": pages, "report": proc.stdout,
            "wall_s": round(time.monotonic() - started, 1)}


# --- figures and the table --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    sources: dict[str, tuple[str, str]]  # system -> (measurement, field)
    higher_is_better: bool = True


FIGURES = [
    Figure("enqueue_one", "enqueue one by one", "/s",
           {"project": ("enqueue", "request_sync_per_s"), "dramatiq": ("enqueue", "send_per_s"),
            "bullmq": ("enqueue", "add_per_s")}),
    Figure("enqueue_batch", "batch enqueue", "/s",
           {"project": ("enqueue", "request_syncs_per_s"), "dramatiq": ("enqueue", "group_run_per_s"),
            "bullmq": ("enqueue", "add_bulk_per_s")}),
    Figure("noop", "pipeline, no-op jobs", "jobs/s",
           {s: ("noop", "jobs_per_s") for s in PEERS}),
    Figure("noop_cpu", "  worker CPU per no-op job", "ms CPU",
           {s: ("noop", "worker_cpu_ms_per_job") for s in PEERS}, False),
    Figure("noop_pg_cpu", "  PostgreSQL CPU per no-op job", "ms CPU",
           {"project": ("noop", "postgres_cpu_ms_per_job")}, False),
    Figure("noop_redis_cpu", "  Redis CPU per no-op job", "ms CPU",
           {s: ("noop", "redis_cpu_ms_per_job") for s in ("project", "dramatiq")}, False),
    Figure("work10", "pipeline, 10 ms jobs", "jobs/s",
           {s: ("work10", "jobs_per_s") for s in PEERS}),
    Figure("latency_p50", "idle start latency p50", "ms", {s: ("latency", "p50_ms") for s in PEERS}, False),
    Figure("latency_p95", "idle start latency p95", "ms", {s: ("latency", "p95_ms") for s in PEERS}, False),
    Figure("latency_p99", "idle start latency p99", "ms", {s: ("latency", "p99_ms") for s in PEERS}, False),
    Figure("sync_rate", "syncs/s at 100 ms x 2 chains, 20 tokens", "/s", {"project": ("sync", "jobs_per_s")}),
    Figure("sync_ideal", "  ideal (in flight / latency)", "/s", {"project": ("sync", "ideal_per_s")}),
    Figure("sync_fraction", "  fraction of ideal", "", {"project": ("sync", "fraction_of_ideal")}),
    Figure("priority_p95", "high start p95, 10,000 low queued", "ms", {"project": ("priority", "p95_ms")}, False),
    *(fig for ms in (0, 100) for fig in (
        Figure(f"realistic{ms}_rate", f"realistic re-sync at {ms} ms, 5 chains, default tokens", "/s",
               {"project": (f"realistic{ms}", "jobs_per_s")}),
        Figure(f"realistic{ms}_cpu", "  CPU per sync: worker + PostgreSQL + Redis", "ms CPU",
               {"project": (f"realistic{ms}", "cpu_ms_per_job")}, False),
        Figure(f"realistic{ms}_worker_cpu", "    worker", "ms CPU",
               {"project": (f"realistic{ms}", "worker_cpu_ms_per_job")}, False),
        Figure(f"realistic{ms}_pg_cpu", "    PostgreSQL", "ms CPU",
               {"project": (f"realistic{ms}", "postgres_cpu_ms_per_job")}, False),
        Figure(f"realistic{ms}_redis_cpu", "    Redis", "ms CPU",
               {"project": (f"realistic{ms}", "redis_cpu_ms_per_job")}, False),
        Figure(f"realistic{ms}_first_rate", f"  first sync (nothing stored) at {ms} ms", "/s",
               {"project": (f"realistic{ms}", "first_jobs_per_s")}),
        Figure(f"realistic{ms}_first_cpu", "  CPU per first sync", "ms CPU",
               {"project": (f"realistic{ms}", "first_cpu_ms_per_job")}, False),
    )),
    Figure("realistic100_fraction", "  re-sync at 100 ms: fraction of ideal", "",
           {"project": ("realistic100", "fraction_of_ideal")}),
]


def median_of(runs: list[dict], measurement: str, system: str, field: str) -> float | None:
    values = [r["result"][field] for r in runs
              if r["measurement"] == measurement and r["system"] == system
              and isinstance(r["result"].get(field), (int, float))]
    return statistics.median(values) if values else None


def summarize(runs: list[dict], systems: list[str]) -> dict[str, dict[str, float | None]]:
    """figure key -> system -> median over the rounds (variants take the project's sources)."""
    out: dict[str, dict[str, float | None]] = {}
    for fig in FIGURES:
        row = {}
        for system in systems:
            source = fig.sources.get(system.split(":")[0] if system.startswith("project") else system)
            row[system] = median_of(runs, source[0], system, source[1]) if source else None
        out[fig.key] = row
    return out


def targets(medians: dict, once: dict, system: str = "project") -> list[dict]:
    """Each target of the issue: the figures it compares, and whether it is met."""
    m = {k: v.get(system) for k, v in medians.items()}
    bare = {k: v.get("dramatiq") for k, v in medians.items()}
    bull = {k: v.get("bullmq") for k, v in medians.items()}

    def ratio(a, b):
        return a / b if a is not None and b else None

    def check(description, value, ok):
        return {"target": description, "value": value, "met": None if ok is None else bool(ok)}

    r_bare, r_bull = ratio(m["noop"], bare["noop"]), ratio(m["noop"], bull["noop"])
    mem = once.get("memory", {})
    growth = mem.get("growth_10pct_to_end")
    out = [
        check("pipeline (no-op) >= bare Dramatiq", _fmt_ratio(r_bare), None if r_bare is None else r_bare >= 1),
        check("pipeline (no-op) >= 1/2 BullMQ (stretch: >= BullMQ)", _fmt_ratio(r_bull),
              None if r_bull is None else r_bull >= 0.5),
        check("syncs at 100 ms >= 90% of ideal", _fmt_num(m["sync_fraction"], "")
              , None if m["sync_fraction"] is None else m["sync_fraction"] >= 0.9),
        check("batch enqueue (audit row) >= BullMQ addBulk", _fmt_ratio(ratio(m["enqueue_batch"], bull["enqueue_batch"])),
              None if ratio(m["enqueue_batch"], bull["enqueue_batch"]) is None
              else m["enqueue_batch"] >= bull["enqueue_batch"]),
        check("idle start p50 and p99 <= BullMQ's",
              f"{_fmt_num(m['latency_p50'], 'ms')} / {_fmt_num(m['latency_p99'], 'ms')} vs "
              f"{_fmt_num(bull['latency_p50'], 'ms')} / {_fmt_num(bull['latency_p99'], 'ms')}",
              None if None in (m["latency_p50"], m["latency_p99"], bull["latency_p50"], bull["latency_p99"])
              else m["latency_p50"] <= bull["latency_p50"] and m["latency_p99"] <= bull["latency_p99"]),
        check("high start p95 < 1 s with 10,000 low queued", _fmt_num(m["priority_p95"], "ms"),
              None if m["priority_p95"] is None else m["priority_p95"] < 1000),
        check("worker RSS growth < 10% (" + (f"{_fmt_count(mem['syncs'])} syncs, " if mem.get("syncs") else "")
              + "from 10% to the end)",
              None if growth is None else f"{growth * 100:+.1f}%", None if growth is None else growth < 0.10),
    ]
    return out


def _fmt_num(value, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit in ("", "ms CPU"):
        return f"{value:.2f}"
    return f"{value:,.0f}"


def _fmt_ratio(value) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _fmt_count(value) -> str:
    return "?" if value is None else f"{value:,}"


def format_table(medians: dict, systems: list[str], *, markdown: bool = True) -> str:
    """The peer table: one row per figure, one column per system, then project ÷ bare Dramatiq and ÷ BullMQ."""
    head = ["figure", *(LABELS.get(s, s.replace("project:", "project+")) for s in systems)]
    if "dramatiq" in systems:
        head.append("project ÷ bare")
    if "bullmq" in systems:
        head.append("project ÷ BullMQ")
    rows = []
    for fig in FIGURES:
        values = medians.get(fig.key, {})
        if all(values.get(s) is None for s in systems):
            continue
        unit = "" if fig.unit == "" else f" ({fig.unit})"
        row = [fig.label + unit]
        row += [_fmt_num(values.get(s), fig.unit) for s in systems]
        for peer in ("dramatiq", "bullmq"):
            if peer in systems:
                row.append(_fmt_ratio(_safe_ratio(values.get("project"), values.get(peer))))
        rows.append(row)
    return _render(head, rows, markdown)


def _safe_ratio(a, b):
    return a / b if a is not None and b else None


def format_once(once: dict, *, markdown: bool = True) -> str:
    """The figures measured once: memory, recovery, dashboard, Redis's ceiling."""
    rows = []
    mem = once.get("memory") or {}
    if mem and "error" not in mem:
        growth = mem.get("growth_10pct_to_end")
        rows.append([f"worker RSS over {_fmt_count(mem.get('syncs'))} no-op syncs ({mem.get('worker')}, all processes): "
                     "start / 10% / 50% / end",
                     " / ".join(f"{(mem.get(k) or 0) / 1024:.1f}" for k in
                                ("rss_start_kib", "rss_at_10pct_kib", "rss_at_50pct_kib", "rss_end_kib"))
                     + " MiB" + ("" if growth is None else f" ({growth * 100:+.1f}% from 10%)")])
    elif mem:
        rows.append(["worker RSS", f"error: {mem['error']}"])
    rec = once.get("recovery") or {}
    if rec and "error" not in rec:
        rows.append([f"restart of in-flight syncs after kill -9 of the worker (lease {rec.get('lease_ms')} ms): p50 / max",
                     f"{rec['restart_p50_s']:.1f} / {rec['restart_max_s']:.1f} s ({rec['restarted']} of "
                     f"{rec['in_flight_killed']})" if rec.get("restart_p50_s") is not None else "none restarted"])
    elif rec:
        rows.append(["recovery after kill -9", f"error: {rec['error']}"])
    dash = once.get("dashboard")
    label = "dashboard callback latency at 1,000,000 audit rows"
    if dash is None or dash.get("skipped"):
        rows.append([label, "not measured" if dash is None else f"not measured ({dash['skipped']})"])
    elif "error" in dash:
        rows.append([label, f"error: {dash['error']}"])
    else:
        rows.append([label + ": worst callback p95", f"{dash['worst_callback_p95_ms']:,} ms"])
        for page in dash.get("pages", []):
            rows.append(["  whole page, callbacks together (p50 / p95 ms per range)", page])
    ceiling = once.get("redis") or {}
    if ceiling.get("unpipelined_ops_per_s"):
        rows.append(["Redis ceiling (redis-benchmark PING, 50 clients): unpipelined / pipelined x16",
                     f"{ceiling['unpipelined_ops_per_s']:,.0f} / {ceiling.get('pipelined_16_ops_per_s') or 0:,.0f} ops/s"])
    return _render(["figure (measured once)", "value"], rows, markdown)


def format_targets(items: list[dict], *, markdown: bool = True) -> str:
    rows = [[t["target"], t["value"] or "–", {True: "met", False: "NOT met", None: "not measured"}[t["met"]]]
            for t in items]
    return _render(["target (project, same run)", "measured", ""], rows, markdown)


def _render(head: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": os.getloadavg()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        import redis

        client = redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
        info["redis"] = client.info("server")["redis_version"]
        client.close()
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        info["redis"] = f"unknown ({type(exc).__name__})"
    try:
        import psycopg

        import settings

        with psycopg.connect(os.environ.get("DATABASE_URL") or settings.VARIABLES["DATABASE_URL"].default,
                             dbname="postgres", connect_timeout=5) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:  # noqa: BLE001
        info["postgresql"] = f"unknown ({type(exc).__name__})"
    try:
        import dramatiq

        info["dramatiq"] = dramatiq.__version__
    except Exception:  # noqa: BLE001
        pass
    node = shutil.which("node")
    if node:
        info["node"] = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        try:
            info["bullmq"] = json.loads((NODE_DIR / "node_modules" / "bullmq" / "package.json").read_text())["version"]
        except OSError:
            pass
    return info


def machine_line(info: dict) -> str:
    return (f"{info.get('nproc')} cores ({info.get('cpu', '?')}), {info.get('memory_gib', '?')} GiB, "
            f"Redis {info.get('redis')}, PostgreSQL {info.get('postgresql')}, Python {info.get('python')}, "
            f"Dramatiq {info.get('dramatiq', '?')}, Node {info.get('node', '–')}, BullMQ {info.get('bullmq', '–')}; "
            f"load average at start {', '.join(f'{x:.2f}' for x in info.get('load_average_at_start', ()))}")


def report(doc: dict) -> str:
    s = doc["settings"]
    systems = doc["systems"]
    parts = [
        f"Run {doc['started_at']} ({'quick' if doc['quick'] else 'full'}), median of {s['rounds']} interleaved "
        f"round(s); {s['jobs']:,} jobs per throughput/enqueue figure, batches of {s['batch']}, "
        f"{s['samples']} latency samples (idle gaps {s['gap_ms']} ms); Dramatiq workers "
        f"{s['processes']} processes x {s['threads']} threads, BullMQ 1 process, concurrency {s['bullmq_concurrency']}.",
        "",
        f"Machine: {machine_line(doc['machine'])}.",
        "",
        format_table(doc["medians"], systems),
        "",
        format_once(doc["once"]),
        "",
        format_targets(doc["targets"]),
    ]
    if "before" in doc:
        parts += ["", ab_line(doc["medians"], doc["before"])]
    # The other commit's tree (--before) is reported by its A/B line, not as a proposal.
    variants = [v for v in systems if v.startswith("project:") and v != "project:before"]
    if variants:
        rows = []
        # Memory, recovery and the dashboard are measured for the shipped project only.
        per_variant = {v: targets(doc["medians"], {}, v) for v in variants}
        for i, t in enumerate(doc["targets"]):
            cells = [f"{x[i]['value']} ({'met' if x[i]['met'] else 'not met'})" if x[i]["met"] is not None else "–"
                     for x in per_variant.values()]
            rows.append([t["target"], f"{t['value'] or '–'}", *cells])
        parts += ["", "Proposals (`--variant`, bench/proposals/), the same targets:", "",
                  _render(["target", "project", *(v.replace("project:", "project+") for v in variants)], rows, True)]
    return "\n".join(parts)


def ab_line(medians: dict, commit: str) -> str:
    """One line: the realistic re-syncs, the no-op pipeline and the batch enqueue of this tree against those of ``commit``,
    the same run (what was measured of them)."""
    cells = []
    for ms in REALISTIC_LATENCIES:
        rate, cpu = medians[f"realistic{ms}_rate"], medians[f"realistic{ms}_cpu"]
        now, then = cpu.get("project"), cpu.get("project:before")
        if rate.get("project") is None and rate.get("project:before") is None:
            continue
        cells.append(f"realistic re-sync at {ms} ms {_fmt_num(rate.get('project'), '/s')} vs "
                     f"{_fmt_num(rate.get('project:before'), '/s')} syncs/s, {_fmt_num(now, 'ms CPU')} vs "
                     f"{_fmt_num(then, 'ms CPU')} ms CPU per sync (CPU before ÷ now: {_fmt_ratio(_safe_ratio(then, now))})")
    noop = medians["noop"]
    if noop.get("project:before") is not None:
        split = [medians[key].get(system) for system in ("project", "project:before")
                 for key in ("noop_cpu", "noop_pg_cpu", "noop_redis_cpu")]
        cells.append(f"no-op pipeline {_fmt_num(noop.get('project'), '/s')} vs {_fmt_num(noop.get('project:before'), '/s')}"
                     f" jobs/s, CPU per job worker + PostgreSQL + Redis "
                     + " vs ".join(" + ".join(_fmt_num(v, '') for v in split[i:i + 3]) for i in (0, 3)) + " ms")
    batch = medians["enqueue_batch"]
    if batch.get("project:before") is not None:
        cells.append(f"batch enqueue {_fmt_num(batch.get('project'), '/s')} vs {_fmt_num(batch.get('project:before'), '/s')}"
                     f" requests/s (now ÷ before: {_fmt_ratio(_safe_ratio(batch.get('project'), batch.get('project:before')))})")
    return f"A/B, this tree vs {commit} (same run, interleaved): " + "; ".join(cells) + "."


def before_tree(commit: str) -> Path:
    """``commit``'s tree with this tree's ``bench/`` over it: the same drivers, the other product."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", commit], check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = RESULTS / f"before-{sha}"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    shutil.copytree(ROOT / "bench", tree / "bench", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("results", "node_modules", "__pycache__"))
    return tree


DOC_HEAD = """# Performance

Written by `.venv/bin/python -m bench.run_all --write-docs` (the latest full run); `bench/results/latest.json`
has every run's raw figures.  What each figure measures:

- **project**: the real path: `request_sync` / `request_syncs` (validation, dedup and cooldown in one Lua
  script, the `queued` audit row, the message), and the real `dramatiq actors.worker` worker (lease,
  `start_attempt`, the simulated provider, pricing, `finish_attempt` with the holdings, release).
  "No-op" is the simulated provider at 0 ms with 1 chain and 1 token; "10 ms" at 10 ms. A job "starts"
  when `start_attempt` has marked its audit row `running`.
- **bare Dramatiq**: a `RedisBroker` with Dramatiq's default middleware and actors that only record when
  they ran (`bench/bare_dramatiq.py`); batch enqueue is `group(...).run()`, Dramatiq's only batch API.
- **BullMQ**: `bench/node/bullmq_bench.mjs`, `add` / `addBulk`, a `Worker` (jobs removed on completion).
- Throughput: jobs prefilled, a warmed-up worker, first start to last finish; CPU per job is the worker
  processes' (and PostgreSQL's, Redis's: every process of those servers on the machine) user + system
  time over the run, divided by the jobs.  Idle start latency: one request at a time with a random
  idle gap, request sent -> job started.  Priority: 10,000 `low` syncs (100 ms provider) queued, then
  `high` requests every 200 ms.  Memory: RSS of the worker processes over 100,000 no-op syncs.
  Recovery: the worker group SIGKILLed with 8 syncs in flight, a new worker started at once.
- **project+NAME** columns: a proposal of `bench/proposals/`, patched into the benchmark's processes
  only (`--variant NAME`); see "Proposals, measured" below.

"""


START, END = "<!-- bench:run_all -->\n", "\n<!-- /bench:run_all -->"


def write_docs(path: Path, text: str) -> None:
    """Put the latest report between the markers of ``path``, keeping what is written around them."""
    block = START + text + END
    if path.exists() and START in path.read_text() and END in path.read_text():
        head, rest = path.read_text().split(START, 1)
        _old, tail = rest.split(END, 1)
        path.write_text(head + block + tail)
    else:
        path.write_text(DOC_HEAD + block + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, small counts (about 2 minutes)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--memory-syncs", type=int)
    parser.add_argument("--only", help="comma-separated measurements of the rounds (enqueue,noop,work10,latency,sync,priority,realistic0,realistic100)")
    parser.add_argument("--skip-once", action="store_true", help="skip memory, recovery, dashboard and the Redis ceiling")
    parser.add_argument("--variant", action="append", default=[], help="a project worker variant as another column")
    parser.add_argument("--before", metavar="COMMIT",
                        help="also run the realistic syncs and enqueues of COMMIT's tree, interleaved, as a column and an A/B line")
    parser.add_argument("--dashboard", action="store_true",
                        help="also run bench.dashboard_callbacks (1,000,000 audit rows; adds a few minutes)")
    parser.add_argument("--write-docs", action="store_true", help="also write docs/performance.md")
    parser.add_argument("--from-json", type=Path, help="measure nothing: report a saved run (a latest.json)")
    args = parser.parse_args(argv)
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
        if "before" in doc:
            LABELS["project:before"] = f"before ({doc['before']})"
        doc["medians"] = summarize(doc["runs"], doc["systems"])
        doc["targets"] = targets(doc["medians"], doc["once"])
        text = report(doc)
        if args.write_docs:
            write_docs(ROOT / "docs" / "performance.md", text)
        print(text)
        return 0

    s = Settings.of(args.quick)
    for field, value in (("rounds", args.rounds), ("jobs", args.jobs), ("samples", args.samples),
                         ("memory_n", args.memory_syncs)):
        if value is not None:
            setattr(s, field, value)
    variants = dict(parse_variant(v) for v in args.variant)
    if args.before:
        variants["before"] = {"tree": before_tree(args.before),
                              "only": {"enqueue", "noop", *(f"realistic{ms}" for ms in REALISTIC_LATENCIES)}}
        LABELS["project:before"] = f"before ({args.before})"
    node = ensure_node()
    if node is None:
        print("node/npm not found: BullMQ is left out", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = open(RESULTS / "latest.log", "w")
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    doc = {"started_at": started_at, "quick": args.quick, "settings": dataclasses.asdict(s), "machine": machine(),
           "variants": variants, "runs": [], "once": {}}
    if args.before:
        doc["before"] = args.before
    only = set(args.only.split(",")) if args.only else None
    t0 = time.monotonic()

    for round_no in range(s.rounds):
        steps = [st for st in round_steps(s, node, variants) if only is None or st[0] in only]
        for measurement, system, argv_, cwd in rotate(steps, round_no):
            result = run_json(argv_, cwd=cwd, log=log)
            doc["runs"].append({"round": round_no, "measurement": measurement, "system": system, "result": result,
                                "load_average_after": os.getloadavg()})
            status = result.get("error") or f"{result.get('wall_s')} s"
            print(f"[{time.monotonic() - t0:6.1f} s] round {round_no + 1}/{s.rounds} {measurement:<9} {system:<16} {status}",
                  file=sys.stderr, flush=True)

    if not args.skip_once:
        once_steps: list[tuple[str, Callable[[], dict]]] = [
            ("memory", lambda: run_json(project_cmd("memory", None, "--n", str(s.memory_n), "--timeout", "1700"),
                                         log=log, timeout=1800)),
            ("recovery", lambda: run_json(project_cmd("recovery", None), log=log)),
            ("redis", redis_ceiling),
        ]
        if args.dashboard:
            once_steps.append(("dashboard", lambda: dashboard_run(log)))
        else:
            doc["once"]["dashboard"] = {"skipped": "run with --dashboard: seeds 1,000,000 rows, a few minutes"}
        for name, fn in once_steps:
            doc["once"][name] = fn()
            print(f"[{time.monotonic() - t0:6.1f} s] once {name:<9} "
                  f"{doc['once'][name].get('error') or 'done'}", file=sys.stderr, flush=True)

    systems = ["project", *(f"project:{v}" for v in variants), "dramatiq", *(["bullmq"] if node else [])]
    doc["systems"] = systems
    doc["medians"] = summarize(doc["runs"], systems)
    doc["targets"] = targets(doc["medians"], doc["once"])
    for name in variants:
        doc.setdefault("variant_targets", {})[name] = targets(doc["medians"], doc["once"], f"project:{name}")
    doc["wall_s"] = round(time.monotonic() - t0, 1)
    text = report(doc)
    (RESULTS / "latest.json").write_text(json.dumps(doc, indent=1, default=str))
    (RESULTS / "latest.md").write_text(text + "\n")
    if args.write_docs:
        write_docs(ROOT / "docs" / "performance.md", text)
    print(text)
    print(f"\n({doc['wall_s']} s; bench/results/latest.json, bench/results/latest.md)")
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
