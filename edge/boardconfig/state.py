"""What the section checkers of one board config share while it is validated.

``Board`` holds the error context, the parsed TOML document, the target and tick, and
the registries that cross-section checks need: pins in use, rp2 PWM slices, I2C and
SPI devices, declared buses, channels and loops by name.  The section modules
(``module``, ``channels``, ``drivers``, ``loops``, ``interlocks``, ``runaway``,
``kinds``) are functions of it; ``loader.validate`` calls them in order.
"""

from __future__ import annotations

from edge.boardconfig.core import BAD, MISSING, did_you_mean, type_name
from edge.boardconfig.values import check_table


class Board:
    def __init__(self, ctx, doc):
        self.ctx = ctx
        self.doc = doc
        self.target = None  # schema.Target, once [module] names a valid one
        self.tick_ms = None
        self.module = {}
        self.pins = {}  # pin -> key path of its first use
        self.pwm_slices = {}  # rp2 (slice, channel) -> (key path, pin)
        self.pwm_slice_freq = {}  # rp2 slice -> (key path, freq)
        self.i2c_devices = {}  # (bus, address, channel) -> key path
        self.spi_devices = {}  # linux spidev "N.M" driven by the kernel's chip select
        self.declared_buses = {"spi": {}, "i2c": {}}  # id -> key path
        self.partial = []  # channels validated so far (redundant pairs look back)
        self.by_name = {}  # channel name -> normalised channel
        self.pid_by_name = {}  # loop name -> normalised loop
        self.interlock_errors = False  # [[interlocks]] had errors (kind rules then keep quiet)

    def err(self, key, value, problem, allowed=None, code=None):
        self.ctx.error(key, value, problem, allowed, code)

    def line(self, key):
        return self.ctx.line(key)

    def section(self, name, keys, required=False):
        """The checked values of top-level table ``name`` (``{}`` checked when absent and
        not required); None if it is missing but required, or not a table."""
        t = self.doc.get(name, MISSING)
        if t is MISSING:
            if required:
                self.err(
                    name, MISSING, "is missing: every board config needs a [{}] table".format(name)
                )
                return None
            t = {}
        if not isinstance(t, dict):
            self.wrong_type(name, t)
            return None
        return check_table(self.ctx, t, keys, name)

    def wrong_type(self, key, value, expected="a table"):
        self.err(
            key, value, "has the wrong type: expected {}, got {}".format(expected, type_name(value))
        )

    def at_least_ticks(self, key, value, n, strict=False):
        """Timing keys must span at least ``n`` control ticks (more, if ``strict``)."""
        if self.tick_ms is None or value is BAD or value is None:
            return
        need = n * self.tick_ms
        if value < need or (strict and value == need):
            self.err(
                key,
                value,
                "is too short for tick_ms = {}".format(self.tick_ms),
                "{} {} ms ({} x tick_ms)".format(">" if strict else ">=", need, n),
            )

    def ref(self, key, name, roles, what):
        """The channel ``name`` if it exists with one of ``roles``; else an error, None."""
        if name is BAD or name is None:
            return None
        ch = self.by_name.get(name)
        if ch is None:
            self.err(
                key,
                name,
                "names an unknown channel" + did_you_mean(name, self.by_name),
                ", ".join(self.by_name) or "no channels declared",
            )
            return None
        if ch["role"] not in roles:
            cands = [n for n, c in self.by_name.items() if c["role"] in roles]
            self.err(
                key,
                name,
                "is {} {} channel, not {}".format(
                    "an" if ch["role"] == "actuator" else "a", ch["role"], what
                ),
                ", ".join(cands) if cands else "no such channel declared",
            )
            return None
        return ch

    def inputs_of(self, name):
        """The hardware channels behind ``name`` (a redundant channel's two inputs)."""
        ch = self.by_name.get(name)
        pair = ch.get("redundant") if ch is not None else None
        if isinstance(pair, list):
            return set(pair)
        return {name}
