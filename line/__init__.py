"""The physical line (CPython only): model, loader, hydraulics formulas, solvent data."""
