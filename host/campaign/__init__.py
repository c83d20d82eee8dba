"""Campaigns: screening and optimising reaction conditions on the line, closed loop.

``strategies``: what to run next (designed screens, Bayesian optimisation), seeded and
resumable; ``envelope``: whether the line may run a condition at all (the safety checks
a condition must pass before anything is sent to a module).
"""
