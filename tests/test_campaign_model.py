"""The campaign file: the shipped examples load; every mistake is located (file, line,
key, value, allowed) and the command exits 2 with nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from host.campaign.model import CampaignError, load_campaign, load_campaign_text
from host.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "campaigns"
GOOD = (EXAMPLES / "demo-screen.toml").read_text()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_the_shipped_campaigns_load(path):
    c = load_campaign(path)
    assert c.variables and c.objectives and c.measure is not None
    assert c.recipe_file.is_file() and c.line_file.is_file()


def _errors(text: str) -> list[str]:
    with pytest.raises(CampaignError) as info:
        load_campaign_text(text, str(EXAMPLES / "bad.toml"), EXAMPLES)
    return [str(e) for e in info.value.errors]


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'name = "temperature_c"',
            'name = "temperature"',
            ['variables[0].name = "temperature"', 'did you mean "temperature_c"'],
        ),
        ("hi = 120.0", "hi = 20.0", ["variables[0].hi = 20", "is not above lo", "> 40"]),
        ("hi = 120.0", "hi = 900.0", ["variables[0].hi = 900", "out of range", "-50..300 degC"]),
        (
            'name = "temperature_c"',
            'name = "concentration_mol_l"',
            ["needs a diluent feed", "temperature_c, residence_time_min, equivalents"],
        ),
        (
            'kind = "factorial"',
            'kind = "grid"',
            ['strategy.kind = "grid"', "factorial, lhs, random, bayes"],
        ),
        ("experiments = 9", "experiments = 0", ["budget.experiments = 0", "1..1000"]),
        (
            'signal = "uv1.uv", tolerance_rel',
            'signal = "uv1", tolerance_rel',
            ['steady.signals[0].signal = "uv1"', "module.channel"],
        ),
        (
            'recipe = "../recipes/demo.toml"',
            'recipe = "../recipes/nope.toml"',
            ["campaign.recipe", "names no file"],
        ),
        (
            "dh_kj_mol = -60.0",
            "dh_kj_mol = -6000.0",
            ["safety.dh_kj_mol = -6000", "-2000.0..2000.0"],
        ),
    ],
)
def test_a_mistake_is_located(old, new, expected):
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    errors = _errors(text)
    assert len(errors) == 1, errors
    line = _line_of(text, new.split("\n")[0])
    assert errors[0].startswith(f"{EXAMPLES / 'bad.toml'}:{line}: "), errors[0]
    for part in expected:
        assert part in errors[0], errors[0]


def test_reagent_per_gram_needs_the_molar_mass():
    text = GOOD.replace('name = "yield"', 'name = "reagent_per_gram"').replace(
        "product_molar_mass_g_mol = 180.0\n", ""
    )
    (error,) = _errors(text)
    assert "measure.product_molar_mass_g_mol" in error and "reagent_per_gram" in error


def test_an_invalid_campaign_exits_2_and_starts_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        GOOD.replace("experiments = 9", "experiments = -1").replace("../", f"{EXAMPLES}/../")
    )
    code = main(
        [
            "campaign",
            "run",
            str(ROOT / "examples/lines/demo.toml"),
            str(bad),
            "--emulate",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--campaigns-dir",
            str(tmp_path / "c"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "budget.experiments = -1" in err and "1..1000" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "c").exists()
