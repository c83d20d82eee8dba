"""Recipes: what a chemist wants the line to do, validated before anything moves.

A recipe file (``examples/recipes/*.toml``, reference: docs/recipes.md) states the
chemistry (residence time, temperature, pressure, reagent concentrations and
stoichiometric equivalents) and the procedure (phases of steps), plus the line-wide
shutdown sequences chosen by hazard.  From the chemistry and the line's reactor volume
the host derives the pump flows:

    total flow      Q   = V_reactor / residence_time
    reagent i flow  Q_i = Q * (e_i / c_i) / sum_j (e_j / c_j)

(``e`` equivalents, ``c`` feed concentration in mol/L), so the molar flows ``Q_i c_i``
stand in the ratio of the equivalents and the flows add up to ``Q``.  The limiting
reagent (equivalents 1.0) then meets the others at ``c_lim Q_lim / Q`` mol/L.

``load_recipe(path) -> Recipe`` checks the file on its own (types, ranges, names;
raises ``RecipeError`` listing every problem, each naming file, key, line, value and
what is allowed); ``check_recipe(recipe, line) -> list[str]`` checks it against a line
(modules, channels, setpoint ranges of the modules' board configs, pump ranges, the
feed volume the whole run may consume, the collection vessel); ``plan_recipe(recipe,
line) -> RecipePlan`` gives the derived quantities the sequencer runs with.

The package: ``model`` (the data and its errors), ``loader`` (the file, checked on its
own), ``plan`` (the recipe against a line).  Its public names are importable from here.
"""

from host.recipe.loader import load_recipe, load_recipe_text
from host.recipe.model import (
    COMMAND_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    HOST_CAUSES,
    ON_TIMEOUT,
    SERVICE_COMMANDS,
    Conditions,
    Phase,
    QualityLimit,
    QualitySpec,
    Reagent,
    Recipe,
    RecipeError,
    RecipeIssue,
    Setpoint,
    ShutdownSequence,
    SteadySpec,
    Step,
    ValueRef,
    Wait,
)
from host.recipe.plan import (
    ChannelInfo,
    Collector,
    OperatingPoint,
    PhaseEstimate,
    RecipePlan,
    check_recipe,
    derive_flows,
    module_channels,
    operating_point,
    plan_recipe,
    recipe_warnings,
    valve_target,
)

__all__ = [
    "COMMAND_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "HOST_CAUSES",
    "ON_TIMEOUT",
    "SERVICE_COMMANDS",
    "ChannelInfo",
    "Collector",
    "Conditions",
    "OperatingPoint",
    "Phase",
    "QualityLimit",
    "QualitySpec",
    "PhaseEstimate",
    "Reagent",
    "Recipe",
    "RecipeError",
    "RecipeIssue",
    "RecipePlan",
    "Setpoint",
    "ShutdownSequence",
    "SteadySpec",
    "Step",
    "ValueRef",
    "Wait",
    "check_recipe",
    "derive_flows",
    "load_recipe",
    "load_recipe_text",
    "module_channels",
    "operating_point",
    "plan_recipe",
    "recipe_warnings",
    "valve_target",
]
