"""``--emit-recipe PATH``: the base recipe with the best conditions, as a ready recipe.

The base recipe's text is kept (its comments, phases and shutdown sequences); only the
values of ``[conditions]`` temperature_c / residence_time_min and the excess reagent's
``equivalents`` are replaced, the name gets a ``-best`` suffix, and ``line_file`` is made
relative to where the new file goes.  The result is loaded back with the recipe loader,
so a recipe that would not load is never written.  A wait whose nominal length grows with
the residence time (residence times, collected volume) gets its ``timeout_s`` raised to
1.5 x that length where the base recipe's would now be too short (each such change is
listed in the file's first lines); problems left against the line are returned."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from host.campaign.conditions import excess_reagent
from host.recipe import check_recipe, load_recipe, load_recipe_text
from line.loader import load_line

_SHORT = re.compile(
    r":(\d+): (\S+\.timeout_s) = [0-9.]+ is shorter than the wait's nominal length \((\d+) s\)"
)


def _set_in_table(text: str, table: str, key: str, value: str) -> str:
    """``key = value`` in ``[table]`` (the first occurrence after the header)."""
    header = re.search(rf"^\[{re.escape(table)}\]\s*$", text, re.M)
    if header is None:
        raise ValueError(f"no [{table}] table in the base recipe")
    nxt = re.search(r"^\[", text[header.end() :], re.M)
    end = header.end() + (nxt.start() if nxt else len(text[header.end() :]))
    body = text[header.end() : end]
    pattern = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)([^#\n]*?)(\s*(#.*)?)$", re.M)
    if not pattern.search(body):
        raise ValueError(f"no {key} in [{table}] of the base recipe")
    body = pattern.sub(lambda m: m.group(1) + value + m.group(3), body, count=1)
    return text[: header.end()] + body + text[end:]


def _lengthen_timeouts(text: str, path: Path, line) -> tuple[str, list[str]]:
    """Raise every timeout the line check finds shorter than its wait's nominal length."""
    recipe = load_recipe_text(text, str(path), path.parent)
    changes = []
    lines = text.split("\n")
    for problem in check_recipe(recipe, line):
        m = _SHORT.search(problem)
        if m is None:
            continue
        n, key, nominal = int(m.group(1)), m.group(2), float(m.group(3))
        new = 10.0 * math.ceil(1.5 * nominal / 10.0)
        lines[n - 1], hits = re.subn(
            r"timeout_s\s*=\s*[0-9.]+", f"timeout_s = {new:g}", lines[n - 1]
        )
        if hits:
            changes.append(f"{key} = {new:g} (1.5 x the wait's nominal {nominal:g} s)")
    return "\n".join(lines), changes


def emit_recipe(campaign, condition: dict[str, float], out_path) -> tuple[Path, list[str]]:
    """Write the base recipe at ``condition`` to ``out_path``; (the path, the problems
    left against the campaign's line: empty when ``skid plan`` would accept it)."""
    base = load_recipe(campaign.recipe_file)
    text = base.text
    out = Path(out_path).resolve()
    for name, value in condition.items():
        if name in ("temperature_c", "residence_time_min"):
            text = _set_in_table(text, "conditions", name, f"{value:.4g}")
        elif name == "equivalents":
            text = _set_in_table(text, f"reagents.{excess_reagent(base)}", name, f"{value:.4g}")
    text = _set_in_table(text, "recipe", "name", f'"{base.name}-best"')
    if base.line_file is not None:
        rel = os.path.relpath(base.line_file, out.parent)
        text = _set_in_table(text, "recipe", "line_file", f'"{rel}"')
    line = load_line(campaign.line_file or base.line_file)
    text, changes = _lengthen_timeouts(text, out, line)
    cond = ", ".join(f"{k} = {v:.4g}" for k, v in condition.items())
    head = [f"# Written by skid campaign ({campaign.name}): the best conditions, {cond}."]
    head += [f"# Lengthened for them: {c}." for c in changes]
    text = "\n".join(head) + "\n" + text
    recipe = load_recipe_text(text, str(out), out.parent)  # RecipeError: nothing written
    out.write_text(text)
    return out, check_recipe(recipe, line)
