"""Documentation that names tests must name tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    }


def test_every_test_named_in_safety_md_exists():
    text = (ROOT / "docs" / "safety.md").read_text()
    refs = re.findall(r"`(tests/[\w/]+\.py)(?:::([\w*]+))?`", text)
    assert len(refs) >= 15, "the hazard table should reference its tests"
    missing = []
    for file, name in refs:
        path = ROOT / file
        if not path.exists():
            missing.append(file)
            continue
        if name:
            names = _test_names(path)
            pattern = re.compile("^" + name.replace("*", ".*") + "$")
            if not any(pattern.match(n) for n in names):
                missing.append(f"{file}::{name}")
    assert not missing, missing


def test_safety_md_states_that_software_does_not_replace_independent_protection():
    text = (ROOT / "docs" / "safety.md").read_text()
    assert "complement, and never replace, certified independent" in text.replace("**", "")
