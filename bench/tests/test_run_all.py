"""The benchmark harness's pure parts (bench/run_all.py): medians, the table, the targets. No server is used."""

from __future__ import annotations

from bench import run_all
from bench.common import percentile


def _runs():
    runs = []
    for round_no, (project, bare, bull) in enumerate([(400, 4000, 6000), (500, 4200, 5800), (450, 3900, 6100)]):
        runs += [
            {"round": round_no, "measurement": "noop", "system": "project", "result": {"jobs_per_s": project}},
            {"round": round_no, "measurement": "noop", "system": "dramatiq", "result": {"jobs_per_s": bare}},
            {"round": round_no, "measurement": "noop", "system": "bullmq", "result": {"jobs_per_s": bull}},
        ]
    runs.append({"round": 0, "measurement": "enqueue", "system": "project",
                 "result": {"request_sync_per_s": 900, "request_syncs_per_s": 9000}})
    runs.append({"round": 0, "measurement": "enqueue", "system": "bullmq",
                 "result": {"add_per_s": 3000, "add_bulk_per_s": 8000}})
    runs.append({"round": 0, "measurement": "latency", "system": "project",
                 "result": {"p50_ms": 4.0, "p95_ms": 9.0, "p99_ms": 12.5}})
    runs.append({"round": 0, "measurement": "latency", "system": "bullmq",
                 "result": {"p50_ms": 2.0, "p95_ms": 6.0, "p99_ms": 13.0}})
    runs.append({"round": 0, "measurement": "sync", "system": "project",
                 "result": {"jobs_per_s": 150.0, "ideal_per_s": 160.0, "fraction_of_ideal": 0.9375}})
    runs.append({"round": 0, "measurement": "noop", "system": "dramatiq", "result": {"error": "exit 1: boom"}})
    return runs


def test_medians_ignore_failed_runs_and_variants_take_the_projects_figures():
    runs = _runs() + [{"round": 0, "measurement": "noop", "system": "project:fast", "result": {"jobs_per_s": 999}}]
    medians = run_all.summarize(runs, ["project", "project:fast", "dramatiq", "bullmq"])
    assert medians["noop"] == {"project": 450, "project:fast": 999, "dramatiq": 4000, "bullmq": 6000}
    assert medians["enqueue_batch"]["bullmq"] == 8000
    assert medians["priority_p95"]["project"] is None


def test_table_has_a_row_per_measured_figure_and_the_ratios():
    systems = ["project", "dramatiq", "bullmq"]
    table = run_all.format_table(run_all.summarize(_runs(), systems), systems)
    lines = table.splitlines()
    assert lines[0] == "| figure | project | bare Dramatiq | BullMQ | project ÷ bare | project ÷ BullMQ |"
    noop = next(line for line in lines if line.startswith("| pipeline, no-op jobs"))
    assert noop == "| pipeline, no-op jobs (jobs/s) | 450 | 4,000 | 6,000 | 0.11x | 0.07x |"
    assert "| idle start latency p50 (ms) | 4.0 ms | – | 2.0 ms | – | 2.00x |" in lines
    assert not any(line.startswith("| high start p95") for line in lines)  # nothing measured: no row
    plain = run_all.format_table(run_all.summarize(_runs(), systems), systems, markdown=False)
    assert plain.splitlines()[1].startswith("------")


def test_targets_say_met_not_met_or_unknown():
    systems = ["project", "dramatiq", "bullmq"]
    once = {"memory": {"syncs": 100_000, "growth_10pct_to_end": 0.04}}
    by_name = {t["target"]: t for t in run_all.targets(run_all.summarize(_runs(), systems), once)}
    assert by_name["pipeline (no-op) >= bare Dramatiq"]["met"] is False
    assert by_name["batch enqueue (audit row) >= BullMQ addBulk"]["met"] is True
    assert by_name["syncs at 100 ms >= 90% of ideal"]["met"] is True
    assert by_name["idle start p50 and p99 <= BullMQ's"]["met"] is False
    assert by_name["high start p95 < 1 s with 10,000 low queued"]["met"] is None
    assert by_name["worker RSS growth < 10% (100,000 syncs, from 10% to the end)"]["value"] == "+4.0%"
    text = run_all.format_targets(list(by_name.values()))
    assert "| pipeline (no-op) >= bare Dramatiq | 0.11x | NOT met |" in text


def test_rotation_keeps_measurements_in_order_and_rotates_systems():
    steps = [("a", "p", [], None), ("a", "d", [], None), ("a", "b", [], None), ("c", "p", [], None)]
    assert [(m, s) for m, s, *_ in run_all.rotate(steps, 1)] == [("a", "d"), ("a", "b"), ("a", "p"), ("c", "p")]


def test_variants_and_percentile():
    assert run_all.parse_variant("wt100") == ("wt100", {"env": {"dramatiq_worker_timeout": "100"}})
    assert run_all.parse_variant("x=A=1,B=2") == ("x", {"env": {"A": "1", "B": "2"}})
    assert run_all.parse_variant("y=module:bench.proposals.async_commit") == ("y", {"module": "bench.proposals.async_commit"})
    assert percentile([5, 1, 3, 2, 4], 0.5) == 3 and percentile([], 0.5) is None
    assert run_all.project_cmd("latency", {"threads": 64, "env": {"K": "V"}})[-4:] == ["--threads", "64", "--env", "K=V"]


def test_docs_keep_what_is_written_around_the_report(tmp_path):
    path = tmp_path / "performance.md"
    run_all.write_docs(path, "table 1")
    assert path.read_text().startswith("# Performance") and "table 1" in path.read_text()
    path.write_text(path.read_text() + "\n## Analysis\nkept\n")
    run_all.write_docs(path, "table 2")
    text = path.read_text()
    assert "table 2" in text and "table 1" not in text and text.endswith("## Analysis\nkept\n")


def test_the_ab_line_names_the_no_op_pipeline_and_its_cpu_split():
    runs = []
    for system, rate, cpu in (("project", 300, (3.0, 2.5, 0.4)), ("project:before", 250, (3.5, 2.6, 0.5))):
        runs.append({"round": 0, "measurement": "noop", "system": system,
                     "result": {"jobs_per_s": rate, "worker_cpu_ms_per_job": cpu[0],
                                "postgres_cpu_ms_per_job": cpu[1], "redis_cpu_ms_per_job": cpu[2]}})
    line = run_all.ab_line(run_all.summarize(runs, ["project", "project:before"]), "abc1234")
    assert line == ("A/B, this tree vs abc1234 (same run, interleaved): no-op pipeline 300 vs 250 jobs/s, "
                    "CPU per job worker + PostgreSQL + Redis 3.00 + 2.50 + 0.40 vs 3.50 + 2.60 + 0.50 ms.")
