"""The config-validation core (edge.boardconfig.core) shared by every TOML loader."""

from __future__ import annotations

import pytest

from edge.boardconfig import core
from edge.boardconfig.core import (
    BAD,
    BOOL,
    CHOICE,
    FLOAT,
    ID,
    INT,
    MISSING,
    NAME,
    RANGE,
    REFS,
    STR,
    VALUES,
    ConfigError,
    ConfigErrors,
    Context,
    Key,
    check_table,
    check_value,
    keys,
)

TEXT = """\
[pump]
rate = 5.0
mode = "fast"

[[steps]]
hold_s = 3

[[steps]]
hold_s = 4
target = {flow = 1.0}
"""


def ctx():
    return Context("x.toml", TEXT)


def only_error(c):
    assert len(c.errors) == 1, [str(e) for e in c.errors]
    return c.errors[0]


# --- the one formatter ------------------------------------------------------------------------


def test_located_text_spells_every_part():
    text = core.located_text("f.toml", "a.b", 7, 1.5, "is out of range", "0.0..1.0", "code_x")
    assert text == "f.toml:7: a.b = 1.5 is out of range [code_x]: allowed 0.0..1.0"


def test_located_text_without_line_value_or_key():
    assert core.located_text("f.toml", "a.b", None, MISSING, "is missing") == (
        "f.toml: a.b is missing"
    )
    assert core.located_text("f.toml", None, 3, MISSING, "is not valid TOML: x") == (
        "f.toml:3: is not valid TOML: x"
    )


def test_located_text_shows_values_as_toml_and_cuts_long_ones():
    assert core.located_text("f", "k", 1, 'a"b', "p") == 'f:1: k = "a\\"b" p'
    assert core.located_text("f", "k", 1, [True, None is None], "p") == "f:1: k = [true, true] p"
    long_list = core.located_text("f", "k", 1, list(range(100)), "p")
    assert long_list.endswith(" ... p") and len(long_list) == len("f:1: k = ") + 72 + 2
    long_table = core.located_text("f", "k", 1, {f"k{i}": i for i in range(50)}, "p")
    assert long_table.endswith(" ...} p")


def test_toml_repr():
    assert core.toml_repr(float("nan")) == "nan"
    assert core.toml_repr(float("-inf")) == "-inf"
    assert core.toml_repr(10**20) == "1.000e+20"
    assert core.toml_repr({"a": [1, "x"]}) == '{a = [1, "x"]}'


def test_config_error_attributes_and_missing_value():
    e = ConfigError("f", "k", 2, MISSING, "is missing", "a number")
    assert (e.file, e.key, e.line, e.value, e.problem, e.allowed, e.code) == (
        "f",
        "k",
        2,
        None,
        "is missing",
        "a number",
        None,
    )
    assert isinstance(e, ValueError) and str(e) == "f:2: k is missing: allowed a number"


def test_config_errors_lists_all_and_keeps_the_first_ones_attributes():
    one = ConfigError("f", "a", 1, 1, "is bad")
    two = ConfigError("f", "b", 2, 2, "is worse")
    both = ConfigErrors([one, two])
    assert str(both) == "f: 2 errors:\n  f:1: a = 1 is bad\n  f:2: b = 2 is worse"
    assert both.key == "a" and both.errors == [one, two]
    assert str(ConfigErrors([two])) == str(two)


# --- the context and its line index -----------------------------------------------------------


def test_context_locates_keys_array_elements_and_parents():
    c = ctx()
    assert c.line("pump.rate") == 2
    assert c.line("steps[1].hold_s") == 9
    assert c.line("steps[1].target.flow") == 10
    assert c.line("pump.nothing_here") == 1  # the nearest parent: the table header
    assert c.line("") is None


def test_context_collects_and_raises_all_errors():
    c = ctx()
    c.raise_errors()  # nothing yet: no exception
    c.error("pump.rate", 5.0, "is too fast", "<= 4.0")
    c.error("steps[0].hold_s", 3, "is too short", code="short_hold")
    with pytest.raises(ConfigErrors) as info:
        c.raise_errors()
    assert str(info.value).splitlines() == [
        "x.toml: 2 errors:",
        "  x.toml:2: pump.rate = 5.0 is too fast: allowed <= 4.0",
        "  x.toml:6: steps[0].hold_s = 3 is too short [short_hold]",
    ]


def test_parse_toml_locates_syntax_errors():
    c = Context("bad.toml", "a = 1\nb = = 2\n")
    with pytest.raises(ConfigErrors) as info:
        core.parse_toml(c)
    assert info.value.line == 2
    assert str(info.value).startswith("bad.toml:2: is not valid TOML: ")
    assert core.parse_toml(ctx())["pump"]["mode"] == "fast"


def test_read_text_of_a_missing_file(tmp_path):
    with pytest.raises(ConfigErrors, match="nothing.toml: cannot be read: "):
        core.read_text(tmp_path / "nothing.toml")
    (tmp_path / "ok.toml").write_text("a = 1\n")
    assert core.read_text(tmp_path / "ok.toml") == "a = 1\n"


# --- words ------------------------------------------------------------------------------------


def test_suggestions():
    assert core.suggest("rte", ["rate", "mode"]) == "rate"
    assert core.suggest("zzz", ["rate", "mode"]) is None
    assert core.did_you_mean("mdoe", ["rate", "mode"]) == " (did you mean 'mode'?)"
    assert core.did_you_mean("mdoe", ["mode"], quote='"') == ' (did you mean "mode"?)'
    assert core.did_you_mean("zzz", ["mode"]) == ""


def test_unknown_keys_are_reported_with_suggestion_and_line():
    c = ctx()
    assert core.check_keys(c, "pump", {"rate": 1, "mdoe": 2}, ["rate", "mode"]) is False
    e = only_error(c)
    assert str(e) == (
        "x.toml:1: pump.mdoe = 2 is not a known key (did you mean 'mode'?): allowed rate, mode"
    )
    assert core.check_keys(c, "", {"pump": {}}, ["pump"]) is True


def test_type_names_and_ranges():
    assert [core.type_name(v) for v in (True, 1, 1.0, "", [], {}, None)] == [
        "a boolean",
        "an integer",
        "a float",
        "a string",
        "an array",
        "a table",
        "NoneType",
    ]
    assert core.range_text(0.0, 1.5, "bar") == "0.0..1.5 bar"
    assert core.range_text(0, 1, "1") == "0..1"
    assert core.is_finite(3) and not core.is_finite(True) and not core.is_finite(float("inf"))
    assert not core.is_finite(10**301)


# --- typed values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, expected",
    [
        (Key("n", INT, lo=0, hi=10), 3, 3),
        (Key("x", FLOAT, lo=0.0), 2, 2.0),
        (Key("b", BOOL), False, False),
        (Key("s", STR, max_len=4), "abcd", "abcd"),
        (Key("c", CHOICE, choices=("a", 2)), 2, 2),
        (Key("i", ID), "pump-1", "pump-1"),
        (Key("m", NAME), "heater", "heater"),
        (Key("r", REFS), ["a", "b"], ["a", "b"]),
        (Key("v", VALUES), {"a": 1}, {"a": 1.0}),
        (Key("g", RANGE, lo=0.0), [0, 5], [0.0, 5.0]),
    ],
)
def test_valid_values_are_normalised(key, value, expected):
    c = ctx()
    got = check_value(c, key, "k", value)
    assert got == expected and type(got) is type(expected) and not c.errors


@pytest.mark.parametrize(
    "key, value, text",
    [
        (
            Key("n", INT, lo=0, hi=10),
            1.0,
            "k = 1.0 has the wrong type: expected an integer, got a float: allowed 0..10",
        ),
        (Key("n", INT, lo=0, hi=10), 11, "k = 11 is out of range: allowed 0..10"),
        (
            Key("x", FLOAT, lo=0.0, lo_open=True, unit="s"),
            0,
            "k = 0 is out of range: allowed > 0.0 s",
        ),
        (
            Key("x", FLOAT),
            float("nan"),
            "k = nan is not a finite number: allowed any finite number",
        ),
        (Key("x", FLOAT), True, "k = true has the wrong type: expected a number, got a boolean"),
        (Key("b", BOOL), 1, "k = 1 has the wrong type: expected true or false, got an integer"),
        (Key("s", STR, max_len=2), "abc", 'k = "abc" is not valid: allowed text of at most 2'),
        (Key("c", CHOICE, choices=("fast", "slow")), "fsat", 'choice (did you mean "fast"?)'),
        (Key("i", ID), "host", 'k = "host" is not a valid module id: allowed 1-32 characters'),
        (Key("m", NAME), "Heater", 'k = "Heater" is not a valid name: allowed snake_case'),
        (Key("r", REFS), ["a", "a"], 'k[1] = "a" is listed twice: allowed each name once'),
        (Key("v", VALUES), {"a": "x"}, 'k.a = "x" has the wrong type: expected a finite number'),
        (Key("g", RANGE), [2, 1], "k = [2, 1] is not a range: min must be below max"),
        (Key("g", RANGE, lo=0.0), [-1, 1], "k = [-1, 1] is out of range: allowed [min, max]"),
    ],
)
def test_invalid_values_are_bad_with_a_located_error(key, value, text):
    c = ctx()
    assert check_value(c, key, "k", value) is BAD
    assert text in str(only_error(c))


def test_shortcuts():
    c = ctx()
    assert core.number(c, "pump.rate", 5, lo=0.0, hi=10.0) == 5.0
    assert core.integer(c, "steps[0].hold_s", 3, lo=1) == 3
    assert core.boolean(c, "a", True) is True
    assert core.string(c, "a", "x") == "x"
    assert core.choice(c, "pump.mode", "fast", ("fast", "slow")) == "fast"
    assert not c.errors
    assert core.number(c, "pump.rate", 50, lo=0.0, hi=10.0, unit="mL/min") is BAD
    assert str(only_error(c)) == (
        "x.toml:2: pump.rate = 50 is out of range: allowed 0.0..10.0 mL/min"
    )
    assert core.string(c, "a", "") is BAD
    assert core.choice(c, "pump.mode", "fats", ("fast", "slow")) is BAD
    assert str(c.errors[-1]) == (
        'x.toml:3: pump.mode = "fats" is not a valid choice (did you mean "fast"?): '
        'allowed one of "fast", "slow"'
    )


SCHEMA = keys(
    Key("rate", FLOAT, "how fast", required=True, lo=0.0),
    Key("mode", CHOICE, "how", default="slow", choices=("fast", "slow")),
    Key("boost", BOOL, "only fast", default=False, applies=("fast",)),
)


def test_check_table_fills_defaults_and_reports_missing_and_unknown_keys():
    c = ctx()
    assert check_table(c, {"rate": 1}, SCHEMA, "pump") == {
        "rate": 1.0,
        "mode": "slow",
        "boost": False,
    }
    assert not c.errors
    got = check_table(c, {"rat": 1}, SCHEMA, "pump")
    assert got["rate"] is BAD
    assert [str(e) for e in c.errors] == [
        "x.toml:1: pump.rat = 1 is not a known key (did you mean 'rate'?): "
        "allowed rate, mode, boost",
        "x.toml:2: pump.rate is missing: allowed >= 0.0",
    ]


def test_check_table_applies_and_extra_keys():
    c = ctx()
    got = check_table(
        c,
        {"rate": 1, "boost": True, "own": 1},
        SCHEMA,
        "pump",
        applies_to="slow",
        applies_what='mode "{}"',
        extra=("own",),
    )
    assert "boost" not in got and "own" not in got
    assert str(only_error(c)) == (
        'x.toml:1: pump.boost = true does not apply to mode "slow": allowed only for fast'
    )


def test_a_loader_adds_its_own_types():
    def even(c, key, path, v):
        if v % 2:
            c.error(path, v, "is odd")
            return BAD
        return v

    types = dict(core.VALUE_TYPES, even=even)
    c = ctx()
    assert check_table(
        c, {"n": 2, "m": 3}, keys(Key("n", "even"), Key("m", "even")), "", types=types
    ) == {
        "n": 2,
        "m": BAD,
    }
    assert str(only_error(c)) == "x.toml: m = 3 is odd"
