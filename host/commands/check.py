"""``skid check PATH...``: validate board configs, lines and recipes without running.

Each path is a board config (a TOML file with ``[module]``), a line (``[line]``: every
board config it references is loaded too, then the line checks of host/linecheck.py run)
or a recipe (``[recipe]``: checked against its line); a directory checks every ``*.toml``
in it.  One line per file (ok / N errors), then every error naming file, key, value and
what is allowed.  Exit codes: 0 every file ok, 2 any error.  ``--json``: one JSON object
as the last line of standard output.
"""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge.boardconfig import ConfigError, load_board_config


@dataclass
class FileResult:
    path: str
    kind: str  # "board", "line", "recipe" or "unknown"
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    line: object = None  # the loaded Line, for recipes checked after it

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def register(sub) -> None:
    p = sub.add_parser(
        "check",
        help="validate board configs, lines and recipes without running anything",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="TOML files or directories")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=run)


def run(args) -> int:
    files: list[Path] = []
    missing: list[FileResult] = []
    for text in args.paths:
        path = Path(text)
        if path.is_dir():
            files.extend(sorted(path.glob("*.toml")))
        elif path.is_file():
            files.append(path)
        else:
            missing.append(
                FileResult(text, "unknown", [_issue("not_found", f"{text}: no such file")])
            )
    results = check_paths(files) + missing
    for res in results:
        _print_result(res)
    ok = all(r.ok for r in results)
    if args.json:
        print(json.dumps({"files": [r.to_dict() for r in results], "ok": ok}))
    return 0 if ok else 2


def check_paths(paths: list[Path]) -> list[FileResult]:
    """Check every file; lines first, so recipes can be checked against a line given
    on the same command line."""
    kinds = [(p, _kind_of(p)) for p in paths]
    order = {"board": 0, "line": 1, "unknown": 2, "recipe": 3}
    by_path: dict[Path, FileResult] = {}
    lines = []
    for path, (kind, err) in sorted(kinds, key=lambda pk: order[pk[1][0]]):
        if err is not None:
            res = FileResult(str(path), kind, [err])
        elif kind == "board":
            res = check_board(path)
        elif kind == "line":
            res = check_line_file(path)
            if res.line is not None:
                lines.append(res.line)
        else:
            res = check_recipe_file(path, lines)
        by_path[path] = res
    return [by_path[p] for p in paths]


def _kind_of(path: Path) -> tuple[str, dict | None]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return "unknown", _issue("unreadable", f"{path}: cannot be read: {exc}")
    except tomllib.TOMLDecodeError as exc:
        return "unknown", _issue("invalid_toml", f"{path}: is not valid TOML: {exc}")
    for section, kind in (("module", "board"), ("line", "line"), ("recipe", "recipe")):
        if section in doc:
            return kind, None
    return "unknown", _issue(
        "unknown_file_kind",
        f"{path}: neither a board config, a line nor a recipe; allowed: a file with a "
        "[module], [line] or [recipe] table",
    )


def _issue(code: str, message: str, **extra) -> dict:
    out = {"code": code, "message": message}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def _from_load_error(code: str, exc) -> list[dict]:
    """Every problem of a ConfigErrors / LineErrors as issue dicts."""
    return [
        _issue(
            code,
            str(e),
            file=e.file and str(e.file),
            key=e.key,
            line=e.line,
            value=_jsonable(e.value),
            allowed=e.allowed,
        )
        for e in getattr(exc, "errors", [exc])
    ]


def _jsonable(v):
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return repr(v)


def check_board(path: Path) -> FileResult:
    res = FileResult(str(path), "board")
    try:
        load_board_config(path)
    except ConfigError as exc:
        res.errors = _from_load_error("board_config", exc)
    return res


def check_line_file(path: Path) -> FileResult:
    from host.linecheck import check_line  # lazy: start-up
    from line.loader import LineError, load_line  # lazy: start-up

    res = FileResult(str(path), "line")
    try:
        line = load_line(path)
    except LineError as exc:
        res.errors = _from_load_error("line_file", exc)
        return res
    report = check_line(line)
    res.line = line
    res.errors = [i.to_dict() for i in report.errors]
    res.warnings = [i.to_dict() for i in report.warnings]
    return res


def check_recipe_file(path: Path, lines: list) -> FileResult:
    from host import recipe as recipe_mod  # lazy: start-up

    res = FileResult(str(path), "recipe")
    try:
        recipe = recipe_mod.load_recipe(path)
    except (ValueError, KeyError, OSError) as exc:
        res.errors = _from_recipe_error(exc)
        return res
    line, err = _line_for_recipe(path, recipe, lines)
    if err is not None:
        res.errors.append(err)
        return res
    try:
        errors, warnings = _split_outcome(recipe_mod.check_recipe(recipe, line))
        warnings += _split_outcome(recipe_mod.recipe_warnings(recipe, line))[0]
        flows = recipe_mod.plan_recipe(recipe, line).pump_flows
    except (ValueError, KeyError, LookupError) as exc:
        res.errors = _from_recipe_error(exc)
        return res
    res.errors += errors
    res.warnings += warnings
    point_errors, point_warnings = _line_at_operating_point(
        recipe, line, flows if not errors else None
    )
    res.errors += point_errors
    res.warnings += point_warnings
    return res


def _line_at_operating_point(recipe, line, flows) -> tuple[list[dict], list[dict]]:
    """The line checks that need the recipe's temperature, pressure, solvent and flows
    (boiling margin at pressure, setpoint against the interlock, BPR after the coil),
    located at the recipe keys that set them, exactly as ``skid run`` checks them."""
    from host.linecheck import check_line  # lazy: start-up
    from host.recipe import operating_point  # lazy: start-up

    point = operating_point(recipe, line)
    report = check_line(
        line,
        temperature_c=point.temperature_c,
        pressure_bar=point.pressure_bar,
        flows_ml_min=flows or None,
        solvent=recipe.solvent,
        origin=point.origin,
    )
    return [i.to_dict() for i in report.errors], [i.to_dict() for i in report.warnings]


def _line_for_recipe(path: Path, recipe, lines: list):
    """The recipe's own line file, else the line given on the command line with the
    recipe's line id, else the only line given."""
    from line.loader import LineError, load_line  # lazy: start-up
    from line.model import Line  # lazy: start-up

    declared = getattr(recipe, "line_file", None) or getattr(recipe, "line", None)
    if isinstance(declared, Line):
        return declared, None
    if isinstance(declared, str | Path):
        for candidate in (path.parent / declared, Path(declared)):
            if candidate.is_file():
                try:
                    return load_line(candidate), None
                except LineError as exc:
                    return None, _issue("recipe_line", f"{path}: its line is invalid: {exc}")
    line_id = getattr(recipe, "line", None)
    named = [ln for ln in lines if ln.id == line_id]
    if len(named) == 1 or len(lines) == 1:
        return (named or lines)[0], None
    return None, _issue(
        "recipe_line",
        f"{path}: no line to check the recipe against; give exactly one line file with it "
        "(skid check LINE RECIPE)",
    )


def _from_recipe_error(exc) -> list[dict]:
    errors = getattr(exc, "errors", None) or [exc]
    return [_issue(getattr(e, "code", "recipe"), str(e)) for e in errors]


def _split_outcome(outcome) -> tuple[list[dict], list[dict]]:
    """Whatever check_recipe returns: a report with errors/warnings, or a list of errors."""
    if outcome is None:
        return [], []
    if hasattr(outcome, "errors"):
        errs, warns = outcome.errors, getattr(outcome, "warnings", [])
    else:
        errs, warns = list(outcome), []

    def conv(item):
        if isinstance(item, dict):
            return item
        if hasattr(item, "to_dict"):
            return item.to_dict()
        return _issue(getattr(item, "code", "recipe"), str(item))

    return [conv(e) for e in errs], [conv(w) for w in warns]


def _print_result(res: FileResult) -> None:
    n = len(res.errors)
    status = "ok" if res.ok else f"{n} error{'s' if n != 1 else ''}"
    extra = f", {len(res.warnings)} warning(s)" if res.warnings else ""
    print(f"{res.path} ({res.kind}): {status}{extra}")
    for e in res.errors:
        print(f"  error: {e['message']}")
    for w in res.warnings:
        print(f"  warning: {w['message']}")
    sys.stdout.flush()
