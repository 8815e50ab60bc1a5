"""The providers take shared names from where they are defined, never from each other."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import chaindata.rpc


def imported_modules(module: str) -> set[str]:
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | \
        {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


@pytest.mark.parametrize("provider, other", [("chaindata.alchemy", "chaindata.rpc"),
                                             ("chaindata.rpc", "chaindata.alchemy")])
def test_no_provider_imports_another(provider, other):
    assert other not in imported_modules(provider)


def test_rpc_re_exports_nothing():
    assert not hasattr(chaindata.rpc, "__all__")
