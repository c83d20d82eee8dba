"""Campaigns: screening and optimising reaction conditions on the line, closed loop.

``strategies``: what to run next (designed screens, Bayesian optimisation), seeded and
resumable; ``envelope``: whether the line may run a condition at all (the safety checks
a condition must pass before anything is sent to a module).

The campaign itself (docs/campaigns.md): ``model`` (the campaign file), ``conditions`` (a
condition on the base recipe, the measurement), ``runner`` (the deterministic experiment
loop), ``session`` (one coordinator run around it), ``record`` (the hash-chained campaign
record), ``report`` and ``emit`` (figures, CSV, the best conditions as a recipe), ``cli``
(what ``skid campaign`` does).
"""
