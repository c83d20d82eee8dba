"""``--emit-recipe PATH``: the base recipe with the best conditions, as a ready recipe.

The base recipe's text is kept (its comments, phases and shutdown sequences); only the
values of ``[conditions]`` temperature_c / residence_time_min and the excess reagent's
``equivalents`` are replaced, the name gets a ``-best`` suffix, and ``line_file`` is made
relative to where the new file goes.  The result is loaded back with the recipe loader,
so a recipe that would not load is never written."""

from __future__ import annotations

import os
import re
from pathlib import Path

from host.campaign.conditions import excess_reagent
from host.recipe import load_recipe, load_recipe_text


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


def emit_recipe(campaign, condition: dict[str, float], out_path) -> Path:
    """Write the base recipe at ``condition`` to ``out_path``; returns the path."""
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
    cond = ", ".join(f"{k} = {v:.4g}" for k, v in condition.items())
    text = f"# Written by skid campaign ({campaign.name}): the best conditions, {cond}.\n" + text
    load_recipe_text(text, str(out), out.parent)  # raises RecipeError: nothing written
    out.write_text(text)
    return out
