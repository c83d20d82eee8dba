"""Assemble a Node from a compiled board config (see docs/board-config.md, "Compiled form").

Runs on the board (MicroPython) as well as on CPython: it takes the decoded config dict
(``edge.compiled_config``), a hardware provider (``hw``, see ``edge.drivers``) and a sink
for outgoing messages, and wires the small objects together.  Each config section becomes
one object; references between sections are by name and were validated by the loader, so
this module only looks them up.
"""

from edge.alarms import Alarm, AlarmSet
from edge.drivers import build_actuator, build_sensor
from edge.interlocks import INPUT_TRUE, Action, Interlock
from edge.lease import LeaseWatchdog
from edge.node import SRC_ACTUATOR, SRC_SENSOR, SRC_SETPOINT, ActuatorSlot, Loop, Node
from edge.pid import PID
from edge.signals import Current4to20, Linear, SensorChannel, Unfiltered
from protocol.wire import Channel

# Feature modules (edge.rtd, edge.table, edge.voter, edge.runaway) are imported inside the
# functions that need them: only boards whose config uses a feature carry its file
# (edge.boardconfig.board_files.files_for_config), and an imported module costs RAM for
# as long as the board runs (docs/deploy.md, "Memory").

# Causes of the built-in alarms (docs/board-config.md): a frozen reading, a 1oo2 pair
# running on one probe.
CAUSE_STUCK = "sensor_stuck"
CAUSE_REDUNDANCY_LOST = "redundancy_lost"


def build_calibration(cal):
    if cal is None:
        return None
    t = cal["type"]
    if t == "linear":
        return Linear(cal["gain"], cal["offset"], cal["raw_min"], cal["raw_max"])
    if t == "4-20mA":
        return Current4to20(cal["lo_value"], cal["hi_value"])
    if t == "pt100":
        # Only boards whose config has a PT100 channel carry edge/rtd.py.
        from edge.rtd import Pt100  # noqa: PLC0415

        return Pt100(cal["r0"], cal["r_short"], cal["r_open"])
    if t == "table":
        # Only boards whose config has a calibration table carry edge/table.py.
        from edge.table import Table  # noqa: PLC0415

        return Table(cal["points"], cal["low_reason"], cal["high_reason"])
    raise ValueError("calibration type {!r} unknown".format(t))


def _watched(by_name, entry):
    """The object an interlock or alarm watches: its channel, or the channel's value
    before the low-pass filter with ``unfiltered = true``."""
    ch = by_name[entry["channel"]]
    return Unfiltered(ch) if entry.get("unfiltered") else ch


class _Applied:
    """A deviation's reference on an actuator: the value last written to it (the
    command, or the safe or forced value while a trip or a stop pins it)."""

    __slots__ = ("name", "slot")

    def __init__(self, slot):
        self.name = slot.name
        self.slot = slot

    @property
    def value(self):
        return self.slot.driver.value


class _LoopSetpoint:
    """A deviation's reference on a PID loop: its setpoint while the loop runs in auto,
    None in manual (nothing to follow)."""

    __slots__ = ("name", "pid")

    def __init__(self, loop):
        self.name = loop.name
        self.pid = loop.pid

    @property
    def value(self):
        pid = self.pid
        return pid.setpoint if pid.auto else None


def _reference(entry, by_name, loops):
    """What a deviation entry's value must follow (None for other conditions)."""
    name = entry.get("reference")
    if name is None:
        return None
    for lp in loops:
        if lp.name == name:
            return _LoopSetpoint(lp)
    return _Applied(by_name[name])


def _build_actuators(cfg, hw, drivers, by_name):
    """The actuator slots, in config order.  First of all: building a hardware actuator
    writes its safe value."""
    default_deadman_ms = cfg["watchdog"]["deadman_ms"]
    slots = []
    for ch in cfg["channels"]:
        if ch["role"] != "actuator":
            continue
        drv = drivers.get(ch["name"]) if drivers else None
        if drv is None:
            drv = build_actuator(ch, hw)
        slot = ActuatorSlot(ch["name"], drv, ch.get("deadman_ms") or default_deadman_ms)
        slots.append(slot)
        by_name[ch["name"]] = slot
    return slots


def _build_sensor(ch, hw, drivers):
    drv = drivers.get(ch["name"]) if drivers else None
    if drv is None:
        drv = build_sensor(ch, hw)
    lo, hi = ch["range"]
    obj = SensorChannel(
        ch["name"],
        build_calibration(ch.get("calibration")),
        ch.get("filter_tau_ms") or 0,
        ch.get("stale_ms"),
        lo,
        hi,
        uncertain_ms=ch.get("uncertain_ms"),
        stuck_ms=ch.get("stuck_ms"),
        stuck_band=ch.get("stuck_band") or 0.0,
        stuck_bad=ch.get("on_stuck") == "bad",
    )
    return obj, drv


def _build_redundant(ch, by_name):
    # Only boards whose config has a 1oo2 pair carry edge/voter.py (per-kind bundles).
    from edge.voter import Redundant1oo2  # noqa: PLC0415

    a, b = ch["redundant"]
    return Redundant1oo2(
        by_name[a],
        by_name[b],
        ch["max_disagreement"],
        ch["name"],
        ch["select"],
        ch.get("degraded_max_ms"),
    )


class _Parts:
    """What the channel and loop sections add up to, in birth order."""

    def __init__(self):
        self.sensors = []  # (SensorChannel, driver)
        self.derived = []  # Redundant1oo2
        self.by_name = {}  # channel name -> SensorChannel / Redundant1oo2 / ActuatorSlot
        self.birth = []  # protocol.wire.Channel
        self.sources = []  # (SRC_* kind, object), one per birth channel
        self.builtin_alarms = []  # sensor_stuck and redundancy_lost, ids = channel names


def _build_channels(cfg, hw, drivers, parts):
    by_name = parts.by_name
    for ch in cfg["channels"]:
        name = ch["name"]
        role = ch["role"]
        if role == "actuator":
            parts.sources.append((SRC_ACTUATOR, by_name[name]))
        elif "redundant" in ch and ch.get("driver") is None:
            obj = _build_redundant(ch, by_name)
            parts.derived.append(obj)
            parts.builtin_alarms.append(Alarm.flag(name, obj, "degraded", CAUSE_REDUNDANCY_LOST))
            by_name[name] = obj
            parts.sources.append((SRC_SENSOR, obj))
        else:
            obj, drv = _build_sensor(ch, hw, drivers)
            parts.sensors.append((obj, drv))
            if ch.get("stuck_ms") is not None:
                parts.builtin_alarms.append(Alarm.flag(name, obj, "stuck", CAUSE_STUCK))
            by_name[name] = obj
            parts.sources.append((SRC_SENSOR, obj))
        lo, hi = ch["range"]
        parts.birth.append(Channel(name, ch["unit"], role, lo, hi, ch["resolution"]))


def _build_loops(cfg, parts):
    loops = []
    for p in cfg["pid"]:
        pid = PID(
            p["kp"],
            p["ki"],
            p["kd"],
            p["out_min"],
            p["out_max"],
            p["setpoint_min"],
            p["setpoint_max"],
            ramp_rate=p["ramp_rate"],
            reverse=p["reverse"],
            sample_ms=p["sample_ms"],
            setpoint=p["setpoint"],
            d_filter_ms=p.get("d_filter_ms"),
            sp_weight=p.get("sp_weight", 1.0),
        )
        out = parts.by_name[p["output"]]
        lp = Loop(p["name"], pid, parts.by_name[p["measure"]], out)
        out.loop = lp
        loops.append(lp)
        parts.sources.append((SRC_SETPOINT, lp))
        parts.birth.append(
            Channel(
                p["name"],
                p["unit"],
                "setpoint",
                p["setpoint_min"],
                p["setpoint_max"],
                p["resolution"],
            )
        )
    return loops


def _attach_verifier(ra, loops, by_name):
    """The runaway section: a HeaterVerifier on the loop it names."""
    # Only boards whose config has [runaway] carry edge/runaway.py (per-kind bundles).
    from edge.runaway import HeaterVerifier  # noqa: PLC0415

    for lp in loops:
        if lp.name == ra["pid"]:
            lp.verifier = HeaterVerifier(
                ra["hysteresis"],
                ra["max_error"],
                ra["heating_gain"],
                ra["check_gain_time_ms"],
                ra["full_power"],
                ra["off_level"],
                ra["uncontrolled_rise"],
                name=ra["pid"],
            )
            # The compiled form always names the sensor (the loop's measure unless the
            # config chose another); older blobs without the key mean the loop's.
            measure = ra.get("measure")
            if measure:
                lp.verify_measure = by_name[measure]


def _build_interlocks(cfg, by_name, loops):
    interlocks = []
    for il in cfg["interlocks"]:
        interlocks.append(
            Interlock(
                il["id"],
                _watched(by_name, il),
                il["condition"],
                limit=il["limit"],
                on_delay_ms=il["on_delay_ms"],
                hysteresis=il["hysteresis"],
                action=Action(tuple(il["safe"]), il["values"], il["state"]),
                cause=il["cause"],
                trip_on_bad=il["trip_on_bad"],
                window_ms=il["window_ms"],
                reference=_reference(il, by_name, loops),
                relative=il.get("relative", 0.0),
            )
        )
    es = cfg.get("estop")
    if es:
        # Same tick: no on-delay, every actuator safe.
        interlocks.append(
            Interlock(
                "estop",
                by_name[es["channel"]],
                INPUT_TRUE,
                action=Action(tuple(es["safe"]), None, es["state"]),
                cause=es["cause"],
            )
        )
    return interlocks


def _build_alarms(cfg, by_name, builtin_alarms, loops):
    """The AlarmSet (configured alarms, then the built-in ones), or None without any."""
    if not (cfg["alarms"] or builtin_alarms):
        return None
    return AlarmSet(
        [
            Alarm(
                a["id"],
                _watched(by_name, a),
                a["condition"],
                limit=a["limit"],
                on_delay_ms=a["on_delay_ms"],
                hysteresis=a["hysteresis"],
                severity=a["severity"],
                cause=a["cause"],
                window_ms=a["window_ms"],
                trip_on_bad=a["trip_on_bad"],
                reference=_reference(a, by_name, loops),
                relative=a.get("relative", 0.0),
                while_on=_Applied(by_name[a["while_on"]]) if a.get("while_on") else None,
            )
            for a in cfg["alarms"]
        ]
        + builtin_alarms
    )


def build_node(
    cfg,
    hw,
    sink,
    now_ms,
    boot_nonce,
    reset_cause="power_on",
    key=None,
    config_hash=b"\x00" * 8,
    drivers=None,
):
    """Build the runtime for ``cfg``.

    ``drivers`` (optional) maps channel name -> an already built driver, used instead of
    building one from the spec (the emulator passes its emulated drivers this way).
    """
    module = cfg["module"]
    parts = _Parts()
    # Actuators first: building a hardware actuator writes its safe value.
    slots = _build_actuators(cfg, hw, drivers, parts.by_name)
    _build_channels(cfg, hw, drivers, parts)
    loops = _build_loops(cfg, parts)
    if cfg.get("runaway"):
        _attach_verifier(cfg["runaway"], loops, parts.by_name)
    lease_cfg = cfg["lease"]
    lease = LeaseWatchdog(lease_cfg["timeout_ms"], lease_cfg["on_loss"], lease_cfg["grace_ms"])

    # With a key the module authenticates commands and leases with this one verifier
    # (one boot nonce for both); without one it takes unsigned commands and leases.
    verifier = None
    if key is not None:
        from protocol.auth import CommandVerifier  # noqa: PLC0415  (only keyed modules)

        verifier = CommandVerifier(key, module["id"], boot_nonce)

    return Node(
        module["id"],
        module["kind"],
        config_hash,
        module["tick_ms"],
        module["telemetry_every"],
        parts.sensors,
        parts.derived,
        slots,
        loops,
        _build_interlocks(cfg, parts.by_name, loops),
        _build_alarms(cfg, parts.by_name, parts.builtin_alarms, loops),
        lease,
        parts.birth,
        parts.sources,
        sink,
        now_ms,
        boot_nonce,
        reset_cause=reset_cause,
        verifier=verifier,
    )
