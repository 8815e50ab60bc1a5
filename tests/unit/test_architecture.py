"""The dependency rule: imports only go down the layers, and no import cycle anywhere in the project.

The layers are import-linter contracts in ``pyproject.toml`` (``[tool.importlinter]``; ``lint-imports``
checks them too).  Cycles are looked for here, with grimp (import-linter's graph), among every module
of the project's packages, function-local imports included: a cycle hidden in a function is still one.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import grimp
from importlinter import configuration
from importlinter.application import use_cases

ROOT = Path(__file__).resolve().parents[2]
#: Top-level folders that are not shipped code (they have their own rule: neither imports the other).
NOT_PROJECT = {"tests", "bench", "docs"}


def project_packages() -> list[str]:
    """The project's top-level packages: every folder at the root with an ``__init__.py``."""
    return sorted(p.name for p in ROOT.iterdir()
                  if (p / "__init__.py").is_file() and p.name not in NOT_PROJECT and not p.name.startswith("."))


def build_graph() -> grimp.ImportGraph:
    """Every import between the project's modules."""
    return grimp.build_graph(*project_packages(), cache_dir=None, include_external_packages=True)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per group of project modules that import each other, found with
    Tarjan's strongly connected components, then a shortest path back to the group's first module."""
    project = {m for m in graph.modules if m.split(".")[0] in project_packages()}
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & project) for m in sorted(project)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    for root in sorted(project):  # iterative Tarjan: a recursive one would hit the recursion limit
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            successors = edges[node]
            if i < len(successors):
                work.append((node, i + 1))
                nxt = successors[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in edges[node]:
                    groups.append(sorted(group))

    cycles = []
    for group in groups:
        members, start = set(group), group[0]
        paths = {start: [start]}
        frontier = [start]
        while frontier and start not in [s for f in frontier for s in edges[f]]:
            nxt = []
            for module in frontier:
                for succ in edges[module]:
                    if succ in members and succ not in paths:
                        paths[succ] = paths[module] + [succ]
                        nxt.append(succ)
            frontier = nxt
        last = next(f for f in frontier if start in edges[f])
        cycles.append(paths[last] + [start])
    return cycles


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    lines = [" -> ".join(cycle)]
    for importer, imported in zip(cycle, cycle[1:]):
        for detail in graph.get_import_details(importer=importer, imported=imported)[:1]:
            lines.append(f"    {importer}:{detail['line_number']}: {detail['line_contents']}")
    return "\n".join(lines)


def test_the_contracts_cover_every_project_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert sorted(config["root_packages"]) == project_packages(), (
        "add the new package to [tool.importlinter] root_packages and to a layer of the contracts")


def test_imports_only_go_down_the_layers(capsys):
    configuration.configure()  # what the lint-imports command does first
    kept = use_cases.lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    assert kept, capsys.readouterr().out


def test_no_import_cycle_anywhere_in_the_project():
    graph = build_graph()
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe(graph, c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a cycle added on purpose to the graph is reported, with its lines."""
    graph = build_graph()
    graph.add_import(importer="actors.constants", imported="actors.worker", line_number=1,
                     line_contents="from . import worker")
    cycles = import_cycles(graph)
    assert any(c[0] == c[-1] and "actors.constants" in c and "actors.worker" in c for c in cycles), cycles
    assert "actors.constants:1: from . import worker" in "\n".join(describe(graph, c) for c in cycles)


def top_level_imports(folder: str) -> set[tuple[str, str]]:
    """(file, imported top-level name) for every absolute import in the Python files under ``folder``."""
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        if "results" in path.relative_to(ROOT / folder).parts:  # a benchmark's output (gitignored), e.g. an old tree
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update((str(path.relative_to(ROOT)), a.name.split(".")[0]) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


def test_tests_and_benchmarks_share_only_harness():
    """Neither imports the other: what both need lives in harness/."""
    assert sorted(f for f, name in top_level_imports("tests") if name == "bench") == []
    assert sorted(f for f, name in top_level_imports("bench") if name == "tests") == []
