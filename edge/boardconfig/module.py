"""The module-wide sections of a board config: ``[module]``, ``[lease]``, ``[watchdog]``,
``[buses]`` with the pins they take, and ``[estop]``; and the GPIO pin registry every
section that takes a pin goes through (``use_pin``, ``bus_ref``)."""

from __future__ import annotations

import re

from edge.boardconfig import schema as S
from edge.boardconfig.core import BAD, MISSING, did_you_mean, suggest, unknown_key
from edge.boardconfig.values import check_table

_BUS_RE = re.compile(r"(spi|i2c)([0-9]{1,2})\Z")
_MODULE_KEYS = ("id", "kind", "target", "tick_ms", "telemetry_every", "key_file")


def top_level(board):
    """Report unknown top-level tables."""
    for name, v in board.doc.items():
        if name not in S.TOP_LEVEL:
            unknown_key(board.ctx, "", name, v, list(S.TOP_LEVEL))


def module(board):
    """``[module]``; sets ``board.target`` and ``board.tick_ms`` when they are valid."""
    out = board.section("module", S.MODULE, required=True) or {}
    for k in _MODULE_KEYS:
        out.setdefault(k, BAD)
    if out["target"] is not BAD:
        board.target = S.TARGETS[out["target"]]
    if out["tick_ms"] is not BAD:
        board.tick_ms = out["tick_ms"]
    board.module = out
    return out


def lease(board):
    out = board.section("lease", S.LEASE) or {}
    if not all(k in out for k in S.LEASE):
        return out
    board.at_least_ticks("lease.timeout_ms", out["timeout_ms"], 2)
    grace_given = not isinstance(out["grace_ms"], S.Derived)
    if out["on_loss"] == "hold" and not grace_given:
        board.err(
            "lease.grace_ms",
            MISSING,
            'is missing: on_loss = "hold" needs a bounded grace time',
            S.LEASE["grace_ms"].allowed(),
        )
    elif out["on_loss"] == "safe" and grace_given and out["grace_ms"] is not BAD:
        board.err(
            "lease.grace_ms",
            out["grace_ms"],
            'does not apply with on_loss = "safe"',
            'only with on_loss = "hold"',
        )
    if out["on_loss"] == "safe":
        out["grace_ms"] = 0
    return out


def watchdog(board):
    out = board.section("watchdog", S.WATCHDOG) or {}
    if not all(k in out for k in S.WATCHDOG):
        return out
    board.at_least_ticks("watchdog.timeout_ms", out["timeout_ms"], 2, strict=True)
    board.at_least_ticks("watchdog.deadman_ms", out["deadman_ms"], 2)
    t = board.target
    if t is not None and out["timeout_ms"] is not BAD and out["timeout_ms"] > t.max_watchdog_ms:
        board.err(
            "watchdog.timeout_ms",
            out["timeout_ms"],
            "is beyond the {} watchdog".format(t.name),
            "at most {} ms".format(t.max_watchdog_ms),
        )
    return out


def estop(board, channels):
    if "estop" not in board.doc:
        return None
    v = board.section("estop", S.ESTOP)
    if v is None:
        return None
    ch = board.ref("estop.channel", v["channel"], ("status",), "a status input")
    if ch is None:
        return None
    return {
        "channel": ch["name"],
        "state": v["state"],
        "cause": "estop",
        "safe": [c["name"] for c in channels if c["role"] == "actuator"],
    }


# --- pins -------------------------------------------------------------------------------------


def use_pin(board, key, pin, output=False, adc=False, pwm=False):
    """Claim GPIO ``pin`` for ``key``: it must exist on the target, suit the use, and be
    free."""
    if pin is BAD or pin is None or isinstance(pin, S.Derived):
        return
    if board.target is not None and not _pin_fits(board, key, pin, output, adc, pwm):
        return
    first = board.pins.get(pin)
    if first is not None:
        board.err(
            key,
            pin,
            "is used twice: pin {} is already {} (line {})".format(pin, first, board.line(first)),
            "each pin once",
        )
        return
    board.pins[pin] = key


def _pin_fits(board, key, pin, output, adc, pwm):
    t = board.target
    if pin not in t.pins:
        board.err(key, pin, "is not a pin of target {}".format(t.name), t.pins_text)
        return False
    if output and pin in t.input_only:
        board.err(
            key,
            pin,
            "is input-only on {} and cannot drive an output".format(t.name),
            "an output-capable pin (not {}..{})".format(min(t.input_only), max(t.input_only)),
        )
        return False
    if adc and t.adc_pins is not None and pin not in t.adc_pins:
        allowed = ", ".join(str(p) for p in t.adc_pins) or "none (no on-chip ADC)"
        board.err(key, pin, "is not an ADC pin on {}".format(t.name), allowed)
        return False
    if pwm and t.pwm_pins is not None and pin not in t.pwm_pins:
        board.err(
            key,
            pin,
            "has no hardware PWM on {}".format(t.name),
            ", ".join(str(p) for p in t.pwm_pins),
        )
        return False
    return True


# --- buses ------------------------------------------------------------------------------------


def _bus_name_hint(name):
    if suggest(name, list(S.BUSES)):
        return ""
    return " (bus tables are named spiN or i2cN, N the bus id)"


def buses(board):
    """``[buses]``: the bus speeds and one ``[buses.spiN]``/``[buses.i2cN]`` per bus with
    its pins (on targets where the board, not the kernel, assigns them)."""
    raw = board.doc.get("buses", {})
    out = {"spi_baudrate": 1000000, "i2c_freq": 400000, "spi_pins": {}, "i2c_pins": {}}
    if not isinstance(raw, dict):
        board.wrong_type("buses", raw)
        return out
    scalars = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    out.update(check_table(board.ctx, scalars, S.BUSES, "buses", unknown_hint=_bus_name_hint))
    for name, table in tables.items():
        found = _bus_table(board, name, table)
        if found is not None:
            kind, bus_id, pins = found
            out[kind + "_pins"][bus_id] = pins
    return out


def _bus_table(board, name, table):
    """(kind, bus id, pin list) of ``[buses.NAME]``, or None after an error."""
    path = "buses." + name
    t = board.target
    m = _BUS_RE.match(name)
    if not m:
        board.err(
            path,
            table,
            "is not a bus name" + did_you_mean(name, ["spi0", "spi1", "i2c0", "i2c1"]),
            "spiN or i2cN where N is the bus id",
        )
        return None
    kind, bus_id = m.group(1), int(m.group(2))
    if t is not None and bus_id not in t.bus_ids[kind]:
        board.err(
            path,
            table,
            "is not a {} bus of target {}".format(kind, t.name),
            ", ".join("{}{}".format(kind, i) for i in t.bus_ids[kind]),
        )
        return None
    if t is not None and not t.bus_pins:
        board.err(
            path,
            table,
            "cannot set bus pins on {}: the kernel (device tree) assigns them".format(t.name),
            "no [buses.{}] table on {}".format(name, t.name),
        )
        return None
    pins = check_table(board.ctx, table, S.BUS_TABLES[kind], path)
    for pname, pin in pins.items():
        use_pin(board, path + "." + pname, pin, output=pname in ("sck", "mosi", "scl", "sda"))
    board.declared_buses[kind][bus_id] = path
    order = ("sck", "mosi", "miso") if kind == "spi" else ("scl", "sda")
    return kind, bus_id, [pins[k] for k in order]


def bus_ref(board, key, kind, bus_id):
    """A driver's bus must exist on the target and, where pins are set, be declared."""
    t = board.target
    if bus_id is BAD or t is None:
        return
    if bus_id not in t.bus_ids[kind]:
        board.err(
            key,
            bus_id,
            "is not a {} bus of target {}".format(kind, t.name),
            ", ".join(str(i) for i in t.bus_ids[kind]),
        )
    elif t.bus_pins and t.name != "generic" and bus_id not in board.declared_buses[kind]:
        board.err(
            key,
            bus_id,
            "names an undeclared bus: add [buses.{}{}] with its pins".format(kind, bus_id),
            "a declared {} bus".format(kind),
        )
