"""Load and validate a board-config TOML file (host and Raspberry Pi; CPython only).

``load_board_config(path)`` / ``load_board_config_text(text, filename)`` return a
``BoardConfig`` whose ``data`` is the normalised plain dict that ``compile_config``
encodes: every default filled in (from ``schema`` only), numbers of float keys as
floats, times in ms, channels in declaration order with their telemetry alias.

Every problem is collected; then one ``ConfigErrors`` (a ``ConfigError``, a
``ValueError``) lists them all, each naming the file, the dotted key
(``channels.heater.safe``, ``interlocks[2].limit``), the line when it can be found, the
value and what is allowed::

    board_configs/reactor.toml:42: channels.heater.safe = 1.5 is out of range: allowed 0.0..1.0
"""

from __future__ import annotations

import copy

from edge.boardconfig import channels as channels_section
from edge.boardconfig import drivers, interlocks, kinds, loops, module
from edge.boardconfig import runaway as runaway_section
from edge.boardconfig import schema as S
from edge.boardconfig.core import (  # noqa: F401 - ConfigErrors, toml_repr: re-exported API
    MISSING,
    ConfigError,
    ConfigErrors,
    Context,
    parse_toml,
    read_text,
    toml_repr,
)
from edge.boardconfig.state import Board

FORMAT_VERSION = 1


def validate(ctx, doc):
    """The normalised config of the parsed TOML ``doc``, section by section; None if
    ``ctx`` collected errors.  The order matters: later sections look up earlier ones."""
    board = Board(ctx, doc)
    module.top_level(board)
    mod = module.module(board)
    lease = module.lease(board)
    watchdog = module.watchdog(board)
    buses = module.buses(board)
    channels = channels_section.channels(board, watchdog)
    board.by_name = {c["name"]: c for c in channels}
    pids = loops.pids(board, channels)
    board.pid_by_name = {p["name"]: p for p in pids}
    before = len(ctx.errors)
    interlock_list = interlocks.trips(board, "interlocks", S.INTERLOCK, True)
    board.interlock_errors = len(ctx.errors) > before
    alarms = interlocks.trips(board, "alarms", S.ALARM, False)
    interlocks.unique_trip_ids(board)
    runaway = runaway_section.runaway(board)
    interlocks.setpoints_below_trips(board, pids, interlock_list)
    runaway_section.loop_reaches_verifier_levels(board, runaway)
    estop = module.estop(board, channels)
    kinds.kind_rules(board, mod, channels, interlock_list, runaway)
    if len(channels) + len(pids) > S.MAX_BIRTH_CHANNELS:
        board.err(
            "channels",
            MISSING,
            "declares {} channels and {} loops: a birth holds at most {} in all".format(
                len(channels), len(pids), S.MAX_BIRTH_CHANNELS
            ),
        )
    if ctx.errors:
        return None
    return {
        "format": FORMAT_VERSION,
        "module": mod,
        "lease": lease,
        "watchdog": watchdog,
        "buses": buses,
        "channels": channels,
        "pid": pids,
        "interlocks": interlock_list,
        "alarms": alarms,
        "runaway": runaway,
        "estop": estop,
    }


# --- public API ---------------------------------------------------------------------------------


class BoardConfig:
    """A validated board config.  ``data`` is the normalised plain dict (the compiled
    form before CBOR encoding); ``file`` is where it came from."""

    def __init__(self, data, file=None):
        self.data = data
        self.file = file

    @property
    def module_id(self):
        return self.data["module"]["id"]

    @property
    def kind(self):
        return self.data["module"]["kind"]

    @property
    def target(self):
        return self.data["module"]["target"]

    @property
    def tick_ms(self):
        return self.data["module"]["tick_ms"]

    @property
    def channels(self):
        return self.data["channels"]

    def channel(self, name):
        for ch in self.data["channels"]:
            if ch["name"] == name:
                return ch
        raise KeyError(name)

    @property
    def emulated(self):
        return all(c.get("driver", "emulated") == "emulated" for c in self.data["channels"])

    def to_dict(self):
        return copy.deepcopy(self.data)

    def __repr__(self):
        return "<BoardConfig {} ({}) from {}>".format(self.module_id, self.kind, self.file)


def load_board_config_text(text, filename="<config>"):
    """Validate TOML ``text``; ``filename`` is used in error messages."""
    ctx = Context(str(filename), text)
    doc = parse_toml(ctx)
    data = validate(ctx, doc)
    ctx.raise_errors()
    return BoardConfig(data, ctx.file)


def load_board_config(path):
    """Read and validate the TOML file at ``path``."""
    return load_board_config_text(read_text(path), str(path))


def emulate(cfg):
    """The same config with every channel on the ``emulated`` driver.

    Sensors keep their calibration and read in the raw unit of the driver they replace
    (so the emulator feeds volts, mA or ohms and faults behave as on hardware); bus pins
    are dropped and the hardware watchdog is off (the host runtime has none).  The result
    has its own config hash."""
    data = drivers.emulated(cfg.to_dict())
    data["buses"]["spi_pins"] = {}
    data["buses"]["i2c_pins"] = {}
    data["watchdog"]["hardware"] = False
    return BoardConfig(data, cfg.file)
