"""The shape of the product code (edge/, protocol/, host/, line/, emulator/).

* no function is longer than 80 lines, unless the comment line just above its ``def``
  (or above its first decorator), or its docstring, says why with ``long:`` (e.g. a hot
  decode loop kept in one piece for speed on a board);
* pylint's ``duplicate-code`` check (at least 8 similar lines, imports, docstrings and
  comments ignored) finds no copied blocks across those packages;
* (that the id and name patterns are written once, in ``protocol/wire.py``, is checked
  over every file, tests included, by
  ``tests/test_topics.py::test_the_id_and_name_patterns_appear_once_in_the_code``.)

Each rule has a self-test on a small made-up tree, so a checker that stopped seeing
anything would fail too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("edge", "protocol", "host", "line", "emulator")
MAX_FUNCTION_LINES = 80
MIN_SIMILARITY_LINES = 8


def product_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for pkg in PRODUCT_PACKAGES for p in (root / pkg).rglob("*.py"))


def _rel(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


# --- function length ------------------------------------------------------------------------


def _says_why(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> bool:
    """A ``long:`` reason in the comment line above the ``def`` or its first decorator,
    or in the docstring."""
    starts = {node.lineno}
    if node.decorator_list:
        starts.add(node.decorator_list[0].lineno)
    for start in starts:
        above = lines[start - 2].strip() if start >= 2 else ""
        if above.startswith("#") and "long:" in above:
            return True
    doc = ast.get_docstring(node, clean=False)
    return doc is not None and "long:" in doc


def long_functions(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, line of its def, length in lines) of every function or method in
    ``path`` longer than MAX_FUNCTION_LINES without a ``long:`` reason; the length runs
    from the ``def`` line to the function's last line."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (child.end_lineno or child.lineno) - child.lineno + 1
                if length > MAX_FUNCTION_LINES and not _says_why(child, lines):
                    out.append((f"{prefix}{child.name}", child.lineno, length))
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(text, filename=str(path)), "")
    return out


def test_there_is_product_code_to_check():
    names = {_rel(p) for p in product_files()}
    assert {"host/cli.py", "edge/node.py", "protocol/wire.py", "line/loader.py"} <= names
    assert any(n.startswith("emulator/") for n in names)


@pytest.mark.parametrize("path", product_files(), ids=_rel)
def test_no_function_is_over_80_lines_without_a_reason(path):
    found = long_functions(path)
    assert not found, (
        f"{_rel(path)}: "
        + "; ".join(f"{name} (line {line}) is {n} lines" for name, line, n in found)
        + f": split it (at most {MAX_FUNCTION_LINES} lines) or say why it is one piece in "
        "a '# long: ...' comment just above its def (or 'long:' in its docstring)"
    )


def _function(name: str, body_lines: int, above: str = "", doc: str = "") -> str:
    head = f"{above}\n" if above else ""
    head += f"def {name}():\n"
    if doc:
        head += f'    """{doc}"""\n'
    return head + "".join(f"    x{i} = {i}\n" for i in range(body_lines))


def test_the_length_rule_counts_lines_and_reads_reasons(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text(
        "\n\n".join(
            [
                _function("at_limit", MAX_FUNCTION_LINES - 1),  # def + 79 = 80 lines
                _function("over", MAX_FUNCTION_LINES),
                _function("with_reason", MAX_FUNCTION_LINES, above="# long: one hot loop"),
                _function("with_doc", MAX_FUNCTION_LINES, doc="long: a table, read top down"),
                _function("comment_not_a_reason", MAX_FUNCTION_LINES, above="# long loop"),
                "class C:\n"
                + "\n".join("    " + ln for ln in _function("method", 90).splitlines())
                + "\n",
                "@staticmethod\n" + _function("decorated", 85),
                "# long: said above the decorator\n@staticmethod\n" + _function("decorated_ok", 85),
            ]
        )
    )
    found = {name: n for name, _, n in long_functions(src)}
    assert found == {
        "over": MAX_FUNCTION_LINES + 1,
        "comment_not_a_reason": MAX_FUNCTION_LINES + 1,
        "C.method": 91,
        "decorated": 86,
    }


# --- duplicated code ------------------------------------------------------------------------


def pylint_duplicates(paths: list[str], cwd: Path) -> str:
    """pylint's duplicate-code report over ``paths`` (empty when nothing is duplicated)."""
    pytest.importorskip("pylint", reason="pylint is in the dev extra: pip install -e '.[dev]'")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pylint",
            "--disable=all",
            "--enable=duplicate-code",
            f"--min-similarity-lines={MIN_SIMILARITY_LINES}",
            "--ignore-imports=y",
            "--ignore-docstrings=y",
            "--ignore-comments=y",
            "--persistent=n",
            "--score=n",
            *paths,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # pylint's exit status is a bit mask: 8 = refactor messages (R0801) were issued;
    # 1 (fatal) or 32 (usage error) mean it could not check at all.
    assert proc.returncode & (1 | 32) == 0, f"pylint failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


def test_no_code_is_duplicated_across_the_product_packages():
    report = pylint_duplicates(list(PRODUCT_PACKAGES), ROOT)
    assert "R0801" not in report, (
        f"duplicated blocks of {MIN_SIMILARITY_LINES}+ lines: share them instead of "
        f"copying (pylint duplicate-code):\n{report}"
    )


def test_the_duplicate_check_finds_a_copied_block(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    block = "".join(f"    total = total * {i} + len(str(value)) - {i}\n" for i in range(10))
    for name in ("a", "b"):
        (pkg / f"{name}.py").write_text(
            f"def {name}_sum(value):\n    total = 0\n{block}    return total\n"
        )
    (pkg / "c.py").write_text("def other(value):\n    return value\n")
    report = pylint_duplicates(["pkg"], tmp_path)
    assert "R0801" in report and "pkg.a" in report and "pkg.b" in report
    assert "pkg.c" not in report
