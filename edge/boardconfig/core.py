"""The config-validation core shared by every TOML loader: board configs, lines, recipes
and fault scenarios.  CPython only (``tomllib``, ``difflib``): it lives in
``edge/boardconfig/`` so that it is never bundled onto a board, and ``line``, ``host`` and
``emulator`` may import it (they may import ``edge``; ``edge`` never imports them).

The API, kept small and stable:

Errors
    ``ConfigError(file, key, line, value, problem, allowed=None, code=None)``: one
    located problem (a ``ValueError``; attributes of the same names).  ``value`` is
    ``MISSING`` when the key is absent (no value is shown; the attribute is None).
    ``ConfigErrors(errors)``: every problem of one file, itself a ``ConfigError`` with
    the first one's attributes.  ``located_text(...)`` is the one formatter behind both::

        board_configs/reactor.toml:42: channels.heater.safe = 1.5 is out of range: allowed 0.0..1.0
        FILE[:LINE]: KEY [= VALUE] PROBLEM[ [code]][: allowed ALLOWED]

Context
    ``Context(file, text)`` collects errors: ``ctx.error(key, value, problem, allowed=None,
    code=None)`` finds the key's line (``ctx.line(key)``, via the line index of
    ``edge.boardconfig.lines``: a dotted key such as ``interlocks[2].limit`` or its
    nearest parent), ``ctx.errors`` is the list, ``ctx.raise_errors()`` raises one
    ``ConfigErrors`` if there are any.  ``read_text(path)`` and ``parse_toml(ctx)`` read
    and parse a file, raising located ``ConfigErrors`` ("cannot be read", "is not valid
    TOML").

Values
    A ``Key(name, type, doc, required, default, unit, lo, hi, lo_open, choices, max_len,
    applies)`` describes one TOML key; ``check_value(ctx, key, path, v)`` validates a
    value against it and ``check_table(ctx, table, keys, path)`` a whole table (unknown
    keys with "did you mean", missing required keys, defaults filled in).  Both return
    the normalised value, or ``BAD`` after recording an error.  The types are the
    constants ``INT FLOAT BOOL STR PATH CHOICE ID NAME REF REFS VALUES RANGE TABLE``; a
    loader adds its own by passing ``types=dict(VALUE_TYPES, mine=checker)``, a checker
    being ``fn(ctx, key, path, v) -> value or BAD``.
    Shortcuts for one-off values: ``number(ctx, path, v, lo, hi, lo_open, unit)``,
    ``integer(...)``, ``boolean(ctx, path, v)``, ``string(ctx, path, v)``,
    ``choice(ctx, path, v, choices)``.

Words
    ``suggest(word, options)`` (difflib, or None), ``did_you_mean(word, options,
    quote)`` (`` (did you mean 'x'?)`` or ""), ``unknown_key(ctx, path, name, value,
    allowed_names)``, ``check_keys(ctx, path, table, allowed_names)``, ``toml_repr(v)``
    (a value as TOML spells it), ``type_name(v)`` ("an integer", ...),
    ``range_text(lo, hi, unit)``, ``fmt_num(x)``, ``is_number(v)``, ``is_finite(v)``,
    and the id and name rules ``ID_RE``/``ID_RULE``, ``NAME_RE``/``NAME_RULE`` (the
    patterns are ``protocol.wire``'s).
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from pathlib import Path

from edge.boardconfig.lines import index_lines, line_of
from protocol.wire import ID_PATTERN, NAME_PATTERN


class _Sentinel:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


MISSING = _Sentinel("MISSING")  # a key that is absent
BAD = _Sentinel("BAD")  # a value that failed validation: later checks skip it

ID_RE = re.compile(ID_PATTERN + r"\Z")
NAME_RE = re.compile(NAME_PATTERN + r"\Z")
ID_RULE = '1-32 characters of [a-z0-9_-] starting with [a-z0-9], not "host"'
NAME_RULE = "snake_case, 1-32 characters of [a-z0-9_] starting with a letter"
PATH_MAX_LEN = 128
FLOAT_LIMIT = 1e300  # beyond this a number is certainly a typo (and may not convert)
VALUE_TEXT_MAX = 72  # longer values are cut in error texts


# --- errors -----------------------------------------------------------------------------------


def located_text(file, key, line, value, problem, allowed=None, code=None):
    """``FILE[:LINE]: KEY [= VALUE] PROBLEM[ [CODE]][: allowed ALLOWED]``, the one error
    format of every config file (``value`` MISSING: the key is absent, no value shown)."""
    where = str(file) if line is None else "{}:{}".format(file, line)
    if key is None:
        subject = ""
    elif value is MISSING:
        subject = key + " "
    else:
        subject = "{} = {} ".format(key, _shown(value))
    text = "{}: {}{}".format(where, subject, problem)
    if code:
        text += " [{}]".format(code)
    if allowed:
        text += ": allowed " + allowed
    return text


def _shown(value):
    shown = toml_repr(value)
    if len(shown) <= VALUE_TEXT_MAX:
        return shown
    if shown[0] == "{":
        return shown[: VALUE_TEXT_MAX - 5] + " ...}"
    return shown[: VALUE_TEXT_MAX - 4] + " ..."


class ConfigError(ValueError):
    """One problem in a config file.

    ``file``, ``key`` (dotted path), ``line`` (1-based, None if unknown), ``value`` (None
    when the key is missing), ``allowed`` (text), ``problem`` (text) and ``code`` (a
    stable snake_case name for the cross-key safety checks, shown in the text in
    brackets; None for the others)."""

    def __init__(self, file, key, line, value, problem, allowed=None, code=None):
        self.file = file
        self.code = code
        self.key = key
        self.line = line
        self.value = None if value is MISSING else value
        self.problem = problem
        self.allowed = allowed
        ValueError.__init__(self, located_text(file, key, line, value, problem, allowed, code))


class ConfigErrors(ConfigError):
    """Every problem found in one file; ``errors`` is the list, the attributes are the
    first one's."""

    def __init__(self, errors):
        self.errors = list(errors)
        first = self.errors[0]
        ConfigError.__init__(
            self,
            first.file,
            first.key,
            first.line,
            first.value,
            first.problem,
            first.allowed,
            first.code,
        )
        if len(self.errors) > 1:
            head = "{}: {} errors:".format(first.file, len(self.errors))
            text = head + "\n" + "\n".join("  " + str(e) for e in self.errors)
        else:
            text = str(first)
        self.args = (text,)

    def __str__(self):
        return self.args[0]


# --- the context: a file, its text, its line index, its errors -------------------------------


class Context:
    """Errors of one file being validated, each located by its dotted key."""

    def __init__(self, file, text):
        self.file = str(file)
        self.text = text
        self.errors = []
        self._index = None

    def line(self, key):
        """The 1-based line of ``key`` (or of its nearest parent); None if not found."""
        if not key:
            return None
        if self._index is None:
            self._index = index_lines(self.text)
        return line_of(self._index, key)

    def error(self, key, value, problem, allowed=None, code=None):
        """Record a problem of ``key`` (``value`` MISSING when the key is absent)."""
        self.errors.append(
            ConfigError(self.file, key, self.line(key), value, problem, allowed, code)
        )

    def raise_errors(self):
        """Raise one ``ConfigErrors`` holding every recorded problem, if there is one."""
        if self.errors:
            raise ConfigErrors(self.errors)


def read_text(path):
    """The UTF-8 text of ``path``; a file that cannot be read is a located error."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors(
            [ConfigError(str(path), None, None, MISSING, "cannot be read: {}".format(exc))]
        ) from None


def parse_toml(ctx):
    """``ctx.text`` parsed by tomllib; a syntax error is a located ``ConfigErrors``."""
    try:
        return tomllib.loads(ctx.text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else None
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ConfigErrors(
            [ConfigError(ctx.file, None, line, MISSING, "is not valid TOML: " + reason)]
        ) from None


# --- words ------------------------------------------------------------------------------------


def suggest(word, options):
    """The closest of ``options`` to ``word`` (difflib, cutoff 0.6), or None."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word, options, quote="'"):
    """`` (did you mean 'x'?)`` for the closest option, or "" when none is close."""
    near = suggest(word, options)
    return "" if near is None else " (did you mean {q}{}{q}?)".format(near, q=quote)


def toml_repr(v):
    """``v`` spelled as in TOML (strings quoted, true/false, inf, nan)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_repr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join("{} = {}".format(k, toml_repr(x)) for k, x in v.items()) + "}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    if isinstance(v, int) and abs(v) > 10**15:
        return "{:.3e}".format(v)
    return repr(v)


def type_name(v):
    """What ``v`` is, for "expected ..., got a string" texts."""
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def fmt_num(x):
    return repr(x)


def fmt_choice(c):
    if isinstance(c, str):
        return '"{}"'.format(c)
    return repr(c)


def range_text(lo, hi, unit=""):
    """``lo..hi unit`` (no unit for "" and the dimensionless "1")."""
    unit = "" if unit in ("", "1") else " " + unit
    return "{}..{}{}".format(fmt_num(lo), fmt_num(hi), unit)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_finite(v):
    """A number within +-FLOAT_LIMIT (not nan, not inf, not an absurd integer)."""
    if not is_number(v):
        return False
    if isinstance(v, int):
        return abs(v) <= FLOAT_LIMIT
    return math.isfinite(v) and abs(v) <= FLOAT_LIMIT


def unknown_key(ctx, path, name, value, allowed_names, hint=""):
    """Report ``path.name`` as unknown, with the closest allowed name as a suggestion."""
    problem = "is not a known key" + did_you_mean(name, allowed_names) + hint
    ctx.error(path + "." + name if path else name, value, problem, ", ".join(allowed_names))


def check_keys(ctx, path, table, allowed_names):
    """Report every key of ``table`` not in ``allowed_names``; True if there was none."""
    ok = True
    for name, v in table.items():
        if name not in allowed_names:
            unknown_key(ctx, path, name, v, list(allowed_names))
            ok = False
    return ok


# --- key schema and typed values --------------------------------------------------------------

INT = "int"
FLOAT = "float"
BOOL = "bool"
STR = "str"
PATH = "path"  # a file path string
CHOICE = "choice"  # one of ``choices`` (strings or numbers)
ID = "id"  # a module id, like an MQTT topic id
NAME = "name"  # a snake_case name
REF = "ref"  # the name of something declared elsewhere in the file
REFS = "refs"  # a list of names, each once
VALUES = "values"  # a table name -> finite number
RANGE = "range"  # [min, max] finite numbers, min < max, within lo..hi
TABLE = "table"  # a table (checked by the caller)


class Key:
    """One TOML key: its ``type``, ``doc``, whether ``required``, its ``default`` (used
    when absent), ``unit``, bounds ``lo``/``hi`` (``lo_open``: lo is exclusive),
    ``choices``, ``max_len`` (strings) and ``applies`` (the variants it applies to, e.g.
    channel roles; None = all)."""

    def __init__(
        self,
        name,
        type,
        doc="",
        required=False,
        default=None,
        unit="",
        lo=None,
        hi=None,
        lo_open=False,
        choices=None,
        max_len=None,
        applies=None,
    ):
        self.name = name
        self.type = type
        self.doc = doc
        self.required = required
        self.default = default
        self.unit = unit
        self.lo = lo
        self.hi = hi
        self.lo_open = lo_open
        self.choices = choices
        self.max_len = max_len
        self.applies = applies

    def allowed(self):
        """Human-readable allowed values, as error messages and the docs show them."""
        unit = " " + self.unit if self.unit else ""
        if self.choices is not None:
            return "one of " + ", ".join(fmt_choice(c) for c in self.choices)
        if self.type == ID:
            return ID_RULE
        if self.type in (NAME, REF):
            return NAME_RULE
        if self.type == BOOL:
            return "true or false"
        if self.type == PATH:
            return "a path of 1..{} characters".format(PATH_MAX_LEN)
        if self.type == STR:
            if self.max_len is None:
                return "non-empty text on one line"
            return "text of at most {} characters".format(self.max_len)
        if self.type in (INT, FLOAT, RANGE):
            lo, hi = self.lo, self.hi
            prefix = "[min, max] with min < max, within " if self.type == RANGE else ""
            if lo is not None and hi is not None and self.lo_open:
                return prefix + "> {} and <= {}{}".format(fmt_num(lo), fmt_num(hi), unit)
            if lo is not None and hi is not None:
                return prefix + "{}..{}{}".format(fmt_num(lo), fmt_num(hi), unit)
            if lo is not None:
                return prefix + "{} {}{}".format(">" if self.lo_open else ">=", fmt_num(lo), unit)
            if self.type == RANGE:
                return "[min, max] with min < max"
            return "any finite number" + (" ({})".format(self.unit) if self.unit else "")
        return ""


def keys(*items):
    """A schema: name -> Key, in declaration order."""
    return {k.name: k for k in items}


def bounds(ctx, key, path, v):
    """``v`` if within ``key.lo``/``key.hi``; else BAD after "is out of range"."""
    lo, hi = key.lo, key.hi
    if lo is not None and (v < lo or (key.lo_open and v == lo)):
        ctx.error(path, v, "is out of range", key.allowed())
        return BAD
    if hi is not None and v > hi:
        ctx.error(path, v, "is out of range", key.allowed())
        return BAD
    return v


def _wrong_type(ctx, path, v, expected, allowed=None):
    ctx.error(
        path, v, "has the wrong type: expected {}, got {}".format(expected, type_name(v)), allowed
    )
    return BAD


def _int(ctx, key, path, v):
    if type(v) is not int:
        return _wrong_type(ctx, path, v, "an integer", key.allowed())
    return bounds(ctx, key, path, v)


def _float(ctx, key, path, v):
    if not is_number(v):
        return _wrong_type(ctx, path, v, "a number", key.allowed())
    if not is_finite(v):
        ctx.error(path, v, "is not a finite number", key.allowed())
        return BAD
    # The bounds check reports the value as the file spells it (-1, not -1.0).
    checked = bounds(ctx, key, path, v)
    return checked if checked is BAD else float(checked)


def _bool(ctx, key, path, v):
    if type(v) is not bool:
        return _wrong_type(ctx, path, v, "true or false")
    return v


def _str(ctx, key, path, v):
    if not isinstance(v, str):
        return _wrong_type(ctx, path, v, "a string")
    limit = PATH_MAX_LEN if key.type == PATH else key.max_len
    if not v or (limit is not None and len(v) > limit) or any(c in v for c in "\x00\n\r"):
        ctx.error(path, v, "is not valid", key.allowed())
        return BAD
    return v


def _choice(ctx, key, path, v):
    for c in key.choices:
        if type(c) is type(v) and c == v:
            return v
    hint = ""
    if isinstance(v, str):
        hint = did_you_mean(v, [c for c in key.choices if isinstance(c, str)], quote='"')
    ctx.error(path, v, "is not a valid choice" + hint, key.allowed())
    return BAD


def _id(ctx, key, path, v):
    if not isinstance(v, str) or not ID_RE.match(v) or v == "host":
        ctx.error(path, v, "is not a valid module id", key.allowed())
        return BAD
    return v


def _name(ctx, key, path, v):
    if not isinstance(v, str) or not NAME_RE.match(v):
        ctx.error(path, v, "is not a valid name", NAME_RULE)
        return BAD
    return v


def _refs(ctx, key, path, v):
    if not isinstance(v, list):
        return _wrong_type(ctx, path, v, "a list of names")
    out = []
    for i, x in enumerate(v):
        p = "{}[{}]".format(path, i)
        if not isinstance(x, str) or not NAME_RE.match(x):
            ctx.error(p, x, "is not a valid name", NAME_RULE)
            return BAD
        if x in out:
            ctx.error(p, x, "is listed twice", "each name once")
            return BAD
        out.append(x)
    return out


def _values(ctx, key, path, v):
    if not isinstance(v, dict):
        return _wrong_type(ctx, path, v, "a table name = number")
    out = {}
    ok = True
    for name, x in v.items():
        p = path + "." + name
        if not NAME_RE.match(name):
            ctx.error(p, x, "is not a valid channel name", NAME_RULE)
            ok = False
        elif not is_finite(x):
            _wrong_type(ctx, p, x, "a finite number")
            ok = False
        else:
            out[name] = float(x)
    return out if ok else BAD


def _range(ctx, key, path, v):
    if not isinstance(v, list) or len(v) != 2 or not all(is_finite(x) for x in v):
        ctx.error(path, v, "is not a range", "[min, max]: two finite numbers")
        return BAD
    lo, hi = float(v[0]), float(v[1])
    if not lo < hi:
        ctx.error(path, v, "is not a range: min must be below max", "[min, max], min < max")
        return BAD
    if (key.lo is not None and lo < key.lo) or (key.hi is not None and hi > key.hi):
        ctx.error(path, v, "is out of range", key.allowed())
        return BAD
    return [lo, hi]


def _table(ctx, key, path, v):
    if not isinstance(v, dict):
        return _wrong_type(ctx, path, v, "a table")
    return v


# The checkers of the shared types; a loader extends a copy with its own.
VALUE_TYPES = {
    INT: _int,
    FLOAT: _float,
    BOOL: _bool,
    STR: _str,
    PATH: _str,
    CHOICE: _choice,
    ID: _id,
    NAME: _name,
    REF: _name,
    REFS: _refs,
    VALUES: _values,
    RANGE: _range,
    TABLE: _table,
}


def check_value(ctx, key, path, v, types=VALUE_TYPES):
    """``v`` validated against ``key`` (normalised: floats for FLOAT keys), or BAD."""
    return types[key.type](ctx, key, path, v)


def check_table(
    ctx,
    table,
    schema,
    path,
    applies_to=None,
    applies_what="",
    extra=(),
    unknown_hint=None,
    types=VALUE_TYPES,
):
    """Check ``table`` against ``schema`` (name -> Key); returns name -> value.

    Unknown keys are reported (with a suggestion; ``unknown_hint(name)`` may add text),
    except the names in ``extra`` (checked by the caller).  Required keys that are
    absent are BAD; others get their default.  When ``applies_to`` is given, keys whose
    ``applies`` excludes it are refused if present ("does not apply to " +
    ``applies_what.format(applies_to)``) and left out.  Invalid values are BAD."""
    out = {}
    allowed = [
        k
        for k in schema
        if schema[k].applies is None or applies_to is None or applies_to in schema[k].applies
    ]
    allowed_all = [e for e in extra if e not in allowed] + allowed
    for name, v in table.items():
        if name not in schema and name not in extra:
            unknown_key(ctx, path, name, v, allowed_all, unknown_hint(name) if unknown_hint else "")
    for name, key in schema.items():
        p = path + "." + name if path else name
        v = table.get(name, MISSING)
        if key.applies is not None and applies_to is not None and applies_to not in key.applies:
            if v is not MISSING:
                ctx.error(
                    p,
                    v,
                    "does not apply to " + applies_what.format(applies_to),
                    "only for " + ", ".join(key.applies),
                )
            continue
        if v is MISSING:
            if key.required:
                ctx.error(p, MISSING, "is missing", key.allowed() or None)
                out[name] = BAD
            else:
                out[name] = key.default
            continue
        out[name] = check_value(ctx, key, p, v, types)
    return out


def number(ctx, path, v, lo=None, hi=None, lo_open=False, unit=""):
    """A finite number (as a float) within ``lo``..``hi``, or BAD after an error."""
    return _float(ctx, Key(path, FLOAT, lo=lo, hi=hi, lo_open=lo_open, unit=unit), path, v)


def integer(ctx, path, v, lo=None, hi=None, lo_open=False, unit=""):
    """An integer within ``lo``..``hi``, or BAD after an error."""
    return _int(ctx, Key(path, INT, lo=lo, hi=hi, lo_open=lo_open, unit=unit), path, v)


def boolean(ctx, path, v):
    """true or false, or BAD after an error."""
    return _bool(ctx, Key(path, BOOL), path, v)


def string(ctx, path, v, max_len=None):
    """A non-empty single-line string (at most ``max_len`` characters), or BAD."""
    return _str(ctx, Key(path, STR, max_len=max_len), path, v)


def choice(ctx, path, v, choices):
    """One of ``choices`` (with a "did you mean"), or BAD after an error."""
    return _choice(ctx, Key(path, CHOICE, choices=tuple(choices)), path, v)
