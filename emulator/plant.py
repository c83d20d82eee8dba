"""The plant: the physics and electronics behind a line's emulated modules.

``Plant(line, seed)`` holds the hydraulic network (``emulator.hydraulics``), the
reagent transport (``emulator.transport``), each reactor's heat balance
(``emulator.thermal``), pumps, valves, vessels, relief valves and the sensors
(``emulator.sensors``).  It touches the edge runtime only through the emulated drivers:
``step(now_ms)`` reads the actuator values the modules last wrote, advances the physics
to ``now_ms`` and writes every sensor's raw reading.  Control and safety stay in the
real ``Node``s (``emulator.emulation`` builds and ticks them on the same clock).

Deterministic: one ``random.Random(seed)`` drives every noise source in a fixed order,
so the same seed gives the same trace; another seed gives other noise.

Pumps: the delivered flow follows the setpoint with a first-order lag, ripples once per
piston stroke, falls to nothing over 10 % above the pump's pressure rating (stall),
and is zero while the feed is empty (the bubble sensor then reads 1).
Valves move between positions in ``switch_ms``; a BPR is an equal-percentage needle
valve whose opening the module's PID sets.  A module without power (``unbind``) leaves
its outputs de-energised: each actuator at its ``unpowered`` value from the board config
(what the hardware does with no drive: a heater off, a fail-open valve open), not at the
``safe`` value the firmware would write, since no firmware runs.
"""

from __future__ import annotations

import math
import random

from emulator.electrical import raw_for
from emulator.hydraulics import Network
from emulator.reaction import DEGRADANT, PRODUCT, CoilReaction
from emulator.sensors import ABSORBANCE_PER_AU, PRESSURE_PER_BAR, SensorFault, SensorModel
from emulator.thermal import ReactorThermal
from emulator.transport import Transport
from line.kinetics import from_line as kinetics_of
from line.loader import board_channels, module_config
from line.model import Line

MAX_SUBSTEP_S = 0.1
ATMOSPHERE_BAR = 1.01325
PRESSURE_SENSOR_TAU_S = 0.05
PRESSURE_NOISE_BAR = 0.01
TEMPERATURE_NOISE_C = 0.05  # per probe sample, sd (a PT100 on a MAX31865 in a plant)
TEMPERATURE_OFFSET_C = 0.05  # per-probe calibration offset, drawn once per seed
ABSORBANCE_NOISE_AU = 0.0003
VOLT_NOISE = 0.001
LAMP_MONITOR_V = 2.0
DARK_VOLTS = 0.002
BUBBLE_PROBABILITY = 0.15  # per analyzer reading while a reactor upstream boils
# A thermal liquid flow sensor at a pump's outlet (SLF3x): it averages between read-outs
# and answers within 20 ms (datasheet), so a lag of one 50 ms tick; repeatability noise
# of 0.1 % of a 10 mL/min pump's full scale.
FLOW_SENSOR_TAU_S = 0.05
FLOW_NOISE_ML_MIN = 0.01

_FLOW_TO_ML_MIN = {"mL/min": 1.0, "uL/min": 1e-3, "L/h": 1000.0 / 60.0}
_CONCENTRATION_UNITS = {"mol/L": 1.0, "mmol/L": 1000.0}


def _fraction(value: float, unit: str) -> float:
    return value / 100.0 if unit == "%" else value


class _Pump:
    def __init__(self, comp, rng: random.Random):
        self.id = comp.id
        self.max_flow = comp.max_flow_ml_min
        self.rating = comp.rating_bar
        self.tau = comp.response_s
        self.pulsation = comp.pulsation
        self.stroke_ml = comp.stroke_ul / 1000.0
        self.feed_initial = comp.feed_volume_ml
        self.feed_ml = comp.feed_volume_ml
        self.q_lag = 0.0  # mL/min the drive is turning at
        self.phase = rng.uniform(0.0, 2.0 * math.pi)
        self.stalled = False  # fault: motor stalled
        self.delivered = 0.0  # mL/min

    @property
    def dry(self) -> bool:
        return self.feed_ml <= 0.0


class _Valve:
    def __init__(self, comp):
        self.id = comp.id
        self.switch_s = comp.switch_ms / 1000.0
        self.x = 0.0  # 0 = outlet[0], 1 = outlet[1]


class _Binding:
    """A powered module: its node's sensors (as models) and actuator slots."""

    def __init__(self, node, sensors, slots):
        self.node = node
        self.sensors = sensors  # list of (SensorModel, source callable, raw_of or None)
        self.slots = slots  # name -> ActuatorSlot


class Plant:
    def __init__(self, line: Line, seed: int = 0):
        self.line = line
        self.seed = seed
        self.rng = random.Random(seed)
        self.solvent = line.solvent
        self.net = Network(line)
        self.kinetics = {
            m.id: kinetics_of(line, m.id)
            for m in line.modules_of("reactor")
            if "kinetics" in m.params
        }
        extra = (PRODUCT, DEGRADANT) if self.kinetics else ()
        self.transport = Transport(line, self.net, extra)
        self.reactions = {
            rid: CoilReaction(
                kin, self.transport.species, self.transport.tanks[self.net.index[rid]]
            )
            for rid, kin in self.kinetics.items()
        }
        comps = line.components()
        self._comps = comps
        self.pumps = {m.id: _Pump(m, self.rng) for m in line.modules_of("pump")}
        self.reactors = {m.id: ReactorThermal(line, m) for m in line.modules_of("reactor")}
        self.valves = {m.id: _Valve(m) for m in line.modules_of("valve")}
        self.vessels = {p.id: 0.0 for p in line.parts.values() if p.kind == "vessel"}
        self._units: dict[str, dict[str, str]] = {}
        self._unpowered: dict[str, dict[str, float]] = {}
        self._channels: dict[str, list[dict]] = {}
        for mid in line.modules:
            cfg, _ = module_config(line, mid)
            self._channels[mid] = cfg["channels"]
            self._units[mid] = {ch["name"]: ch["unit"] for ch in cfg["channels"]}
            self._unpowered[mid] = {
                ch["name"]: ch["unpowered"] for ch in cfg["channels"] if ch["role"] == "actuator"
            }
        self.bindings: dict[str, _Binding] = {}
        self.estops: dict[str, bool] = {mid: False for mid in line.modules}
        self.sensor_faults: dict[tuple[str, str], SensorFault] = {}
        self.clogs: dict[str, dict] = {}  # component -> {"open", "rate", "min_open"}
        self.leaks: dict[str, float] = {}  # component -> conductance mL/s/bar
        self._probe_offsets: dict[tuple[str, str], float] = {}
        self.time_ms: int | None = None
        self.elapsed_s = 0.0
        self.max_pressure_seen = 0.0
        self.peak = [0.0] * self.net.n
        self.relieved_ml = 0.0
        self.leaked_ml = 0.0
        self.boiling: dict[str, bool] = {r: False for r in self.reactors}
        self._rho_cp = self.solvent.density_g_ml * self.solvent.heat_capacity_j_gk
        self._reactor_upstream_of = self._analyzer_upstream_reactors()

    # -- module power -----------------------------------------------------------------------

    def bind(self, module_id: str, node) -> None:
        """Wire a (powered) module's node to the plant; its sensors get readings now."""
        units = self._units[module_id]
        hardware = board_channels(self.line, module_id)
        comp = self.line.modules[module_id]
        sensors = []
        for channel, driver in node.sensors:
            name = channel.name
            unit = units.get(name, "")
            source, tau, noise, raw_of = self._source(comp, channel, unit)
            digital = getattr(driver, "raw_unit", "") == "0/1"
            key = (module_id, name)
            if key not in self._probe_offsets:
                self._probe_offsets[key] = (
                    self.rng.gauss(0.0, TEMPERATURE_OFFSET_C) if unit == "degC" else 0.0
                )
            model = SensorModel(
                channel,
                driver,
                unit,
                hardware.get(name),
                tau,
                noise,
                self.rng,
                self._probe_offsets[key],
                digital,
            )
            sensors.append((model, source, raw_of))
        slots = {slot.name: slot for slot in node.actuators}
        self.bindings[module_id] = _Binding(node, sensors, slots)
        self._write_sensors(module_id, 0.0)

    def unbind(self, module_id: str) -> None:
        """Power lost: the module's outputs fall to their de-energised values (the
        board config's ``unpowered``), whatever the firmware last wrote."""
        self.bindings.pop(module_id, None)

    def _actuator(self, module_id: str, name: str) -> float:
        b = self.bindings.get(module_id)
        if b is not None:
            slot = b.slots.get(name)
            if slot is not None and slot.driver.value is not None:
                return slot.driver.value
        # Unpowered (or not yet written): nothing drives the output.
        return self._unpowered[module_id].get(name, 0.0)

    # -- what each sensor measures ----------------------------------------------------------

    def _source(self, comp, channel, unit: str):
        """(value callable, lag s, noise sd, raw_of or None) for one hardware channel."""
        mid = comp.id
        name = channel.name
        kind = comp.kind
        if unit in PRESSURE_PER_BAR:
            scale = PRESSURE_PER_BAR[unit]
            i = self.net.index[mid]
            return (
                (lambda: self.net.p[i] * scale),
                PRESSURE_SENSOR_TAU_S,
                (PRESSURE_NOISE_BAR * scale),
                None,
            )
        if unit == "degC":
            if kind == "reactor":
                th = self.reactors[mid]
                return (lambda: th.t), comp.probe_tau_s, TEMPERATURE_NOISE_C, None
            return (lambda: self.line.ambient_c), 5.0, TEMPERATURE_NOISE_C, None
        if unit in _FLOW_TO_ML_MIN and kind == "pump":
            return self._pump_flow_source(mid, unit)
        if unit in ABSORBANCE_PER_AU and kind == "analyzer":
            return self._absorbance_source(comp, channel, unit)
        if unit in _CONCENTRATION_UNITS or unit in ("g/L", "mg/mL", "ppm"):
            return self._concentration_source(comp, unit)
        if unit == "":  # status inputs
            if name == "estop":
                return (lambda: 1.0 if self.estops[mid] else 0.0), 0.0, 0.0, None
            if kind == "pump" and name == "feed":
                pump = self.pumps[mid]
                return (lambda: 1.0 if pump.dry else 0.0), 0.0, 0.0, None
            if kind == "reactor" and name == "cutout":
                th = self.reactors[mid]
                return (lambda: 1.0 if th.cutout_open else 0.0), 0.0, 0.0, None
            if kind == "valve" and name.startswith("position"):
                valve = self.valves[mid]
                return (lambda: 1.0 if valve.x > 0.5 else 0.0), 0.0, 0.0, None
            return (lambda: 0.0), 0.0, 0.0, None
        if unit == "V" and "lamp" in name:
            return (lambda: LAMP_MONITOR_V * self._lamp(mid)), 0.5, VOLT_NOISE, None
        # Anything else has no physics behind it here: it reads 0.
        return (lambda: 0.0), 0.0, 0.0, None

    def _pump_flow_source(self, mid: str, unit: str):
        """A flow sensor at the pump's outlet: what the pump delivers (pulsation, stall,
        dry feed) less what leaks out at the pump itself (its head and fittings, ahead of
        the sensor).  A leak further down the line passes the sensor: it is not seen."""
        pump = self.pumps[mid]
        i = self.net.index[mid]
        per = 1.0 / _FLOW_TO_ML_MIN[unit]

        def value():
            return (pump.delivered - self.net.q_leak[i] * 60.0) * per

        return value, FLOW_SENSOR_TAU_S, FLOW_NOISE_ML_MIN * per, None

    def measured_flow_ml_min(self, pump_id: str) -> float:
        """What a flow sensor at the pump's outlet sees (mL/min, no noise)."""
        return self.pumps[pump_id].delivered - self.net.q_leak[self.net.index[pump_id]] * 60.0

    def _lamp(self, mid: str) -> float:
        if "lamp" not in self._unpowered[mid]:
            return 1.0
        return 1.0 if self._actuator(mid, "lamp") >= 0.5 else 0.0

    def absorbance(self, analyzer_id: str) -> float:
        """Noise-free absorbance in the analyzer's cell: its ``absorptivity`` table (the
        pumps' reagents as tracers) plus, behind a reactor with kinetics, the product and
        that reactor's interferent (``line.kinetics.Kinetics.absorbance``)."""
        comp = self.line.modules[analyzer_id]
        c = self.transport.mean(self.net.index[analyzer_id])
        eps = comp.params.get("absorptivity", {})
        path_cm = comp.path_mm / 10.0
        species = self.transport.species
        a = path_cm * sum(eps.get(sp, 0.0) * c[s] for s, sp in enumerate(species))
        for rid in self._reactor_upstream_of.get(analyzer_id, ()):
            kin = self.kinetics.get(rid)
            if kin is not None:
                letters = {kin.a: "A", kin.b: "B", PRODUCT: "P", DEGRADANT: "D"}
                conc = {letters[sp]: c[s] for s, sp in enumerate(species) if sp in letters}
                a += kin.absorbance(conc, comp.path_mm)
        return a

    def _absorbance_source(self, comp, channel, unit):
        mid = comp.id
        scale = ABSORBANCE_PER_AU[unit]
        # The photodiode: V = V0 10^-A, V0 = what the calibration reads as A = 0.
        v0 = raw_for(channel.calibration, 0.0)
        upstream = self._reactor_upstream_of.get(mid, ())
        noise = math.hypot(
            ABSORBANCE_NOISE_AU,
            max((self.kinetics[r].noise_au for r in upstream if r in self.kinetics), default=0.0),
        )

        def value():
            a = self.absorbance(mid)
            if any(self.boiling[r] for r in upstream):
                if self.rng.random() < BUBBLE_PROBABILITY:
                    a += self.rng.uniform(0.3, 1.5)  # a bubble scatters light away
            return a * scale

        def raw_of(v):
            if self._lamp(mid) < 0.5:
                return DARK_VOLTS
            return v0 * 10.0 ** (-(v / scale))

        return value, comp.response_s, noise * scale, raw_of

    def _concentration_source(self, comp, unit):
        mid = comp.id
        species = comp.params.get("species") or (
            self.transport.species[0] if self.transport.species else None
        )
        s = self.transport.species.index(species) if species else None
        mm = comp.molar_mass_g_mol
        scale = _CONCENTRATION_UNITS.get(unit) or (
            mm if unit in ("g/L", "mg/mL") else mm * 1000.0 / self.solvent.density_g_ml
        )

        def value():
            if s is None:
                return 0.0
            return self.transport.mean(self.net.index[mid])[s] * scale

        return value, comp.response_s, 0.0005 * scale, None

    def _analyzer_upstream_reactors(self) -> dict[str, list[str]]:
        out = {}
        for an in self.line.modules_of("analyzer"):
            seen, todo = set(), [an.id]
            while todo:
                c = todo.pop()
                for u in self.line.upstream(c):
                    if u not in seen:
                        seen.add(u)
                        todo.append(u)
            out[an.id] = [r for r in self.reactors if r in seen]
        return out

    # -- stepping ---------------------------------------------------------------------------

    def step(self, now_ms: int) -> None:
        """Advance the physics to ``now_ms`` and write every bound sensor."""
        if self.time_ms is None:
            self.time_ms = now_ms
            for mid in self.bindings:
                self._write_sensors(mid, 0.0)
            return
        dt_total = (now_ms - self.time_ms) / 1000.0
        self.time_ms = now_ms
        if dt_total <= 0.0:
            return
        n = max(1, math.ceil(dt_total / MAX_SUBSTEP_S - 1e-9))
        dt = dt_total / n
        for _ in range(n):
            self._physics(dt)
        for mid in self.bindings:
            self._write_sensors(mid, dt_total)

    def _physics(self, dt: float) -> None:
        """One step of ``dt`` seconds, in order: pumps, clogs, conductances and valves,
        the hydraulic network, bookkeeping, heat and reaction, sensor drift."""
        self.elapsed_s += dt
        self._pumps_step(dt)
        for clog in self.clogs.values():
            if clog["rate"]:
                clog["open"] = max(clog["min_open"], clog["open"] - clog["rate"] * dt)
        self._conductances()
        self._valves_step(dt)
        self.net.solve(dt)
        self._bookkeeping(dt)
        self._reactors_step(dt)
        for fault in self.sensor_faults.values():
            if fault.drift_rate:
                fault.drift += fault.drift_rate * dt

    def _pumps_step(self, dt: float) -> None:
        """Each pump's commanded flow through its lag, pulsation, stall and dry feed."""
        net = self.net
        idx = net.index
        for pid, pump in self.pumps.items():
            unit = self._units[pid].get("flow", "mL/min")
            cmd = self._actuator(pid, "flow")
            if unit in ("g/min", "g/h"):
                cmd = cmd / self.solvent.density_g_ml / (60.0 if unit == "g/h" else 1.0)
            else:
                cmd *= _FLOW_TO_ML_MIN.get(unit, 1.0)
            cmd = min(max(cmd, 0.0), pump.max_flow)
            pump.q_lag += (cmd - pump.q_lag) * (1.0 - math.exp(-dt / pump.tau))
            q = pump.q_lag
            if pump.pulsation and q > 0.0:
                q *= 1.0 + pump.pulsation * math.sin(pump.phase)
                pump.phase = (pump.phase + 2.0 * math.pi * q / 60.0 * dt / pump.stroke_ml) % (
                    2.0 * math.pi
                )
            if pump.stalled or pump.dry:
                q = 0.0
            net.pump_q[idx[pid]] = q / 60.0

    def _conductances(self) -> None:
        """Each node's outlet conductance (BPR valve opening, viscosity at its
        temperature, clogs) and leak."""
        net = self.net
        amb_mu = self.solvent.viscosity_at(self.line.ambient_c)
        for cid, i in net.index.items():
            comp = self._comps[cid]
            if comp.kind == "bpr":
                u = min(
                    max(
                        _fraction(self._actuator(cid, "valve"), self._units[cid].get("valve", "1")),
                        0.0,
                    ),
                    1.0,
                )
                r = comp.rangeability
                g = (
                    comp.open_conductance_ml_min_bar
                    / 60.0
                    * (r ** (u - 1.0) - 1.0 / r)
                    / (1.0 - 1.0 / r)
                )
            else:
                mu = amb_mu
                if comp.kind == "reactor":
                    mu = self.solvent.viscosity_at(self.reactors[cid].t)
                g = 1.0 / (net.R0[i] * mu)
            clog = self.clogs.get(cid)
            if clog is not None:
                g *= clog["open"] ** 2  # laminar: conductance goes with the open area squared
            net.g_out[i] = g
            net.g_leak[i] = self.leaks.get(cid, 0.0)

    def _valves_step(self, dt: float) -> None:
        net = self.net
        for vid, valve in self.valves.items():
            target = 1.0 if self._actuator(vid, "position") >= 0.5 else 0.0
            if valve.switch_s <= 0.0:
                valve.x = target
            else:
                step = dt / valve.switch_s
                valve.x = (
                    min(valve.x + step, target) if target > valve.x else max(valve.x - step, target)
                )
            net.split[net.index[vid]] = [1.0 - valve.x, valve.x]

    def _bookkeeping(self, dt: float) -> None:
        """After the network solve: delivered flows, feeds, vessels, relief and leaks,
        pressure peaks, and the species carried along."""
        net = self.net
        idx = net.index
        for pid, pump in self.pumps.items():
            q = net.pump_delivered[idx[pid]]
            pump.delivered = q * 60.0
            pump.feed_ml = max(0.0, pump.feed_ml - q * dt)
        for e, (_, j, _) in enumerate(net.edges):
            if j < 0 and net.q_edge[e] > 0.0:
                target = net.edge_target[e]
                if target in self.vessels:
                    self.vessels[target] += net.q_edge[e] * dt
        self.relieved_ml += sum(net.q_relief) * dt
        self.leaked_ml += sum(net.q_leak) * dt
        p = net.p
        for i in range(net.n):
            if p[i] > self.peak[i]:
                self.peak[i] = p[i]
                if p[i] > self.max_pressure_seen:
                    self.max_pressure_seen = p[i]
        feed_ok = {idx[pid]: not pump.dry for pid, pump in self.pumps.items()}
        self.transport.step(dt, feed_ok)

    def _reactors_step(self, dt: float) -> None:
        """Heat and reaction in each reactor; boiling at its outlet pressure."""
        net = self.net
        p = net.p
        for rid, th in self.reactors.items():
            i = net.index[rid]
            duty = _fraction(self._actuator(rid, "heater"), self._units[rid].get("heater", "1"))
            flow = net.outflow(i)
            th.step(
                dt,
                duty,
                flow,
                self._rho_cp,
                self.line.ambient_c,
                lambda i=i: self._reagent_presence(i),
                lambda i=i: self._limiting_inlet_mol_l(i),
            )
            reaction = self.reactions.get(rid)
            if reaction is not None:
                reaction.step(dt, th.t)
            down = net.edges[net.out_edges[i][0]][1] if net.out_edges[i] else -1
            p_out = p[down] if down >= 0 else 0.0
            bp = self.solvent.boiling_point_c(p_out + ATMOSPHERE_BAR)
            self.boiling[rid] = bp is not None and th.t > bp

    def _limiting_inlet_mol_l(self, i: int) -> float:
        """mol/L of the limiting reagent (the scarcest of every fed species, 1:1) in what
        enters node ``i`` (its first tank: just arrived)."""
        tanks = self.transport.tanks[i]
        fed = [
            tanks[s][0]
            for s, sp in enumerate(self.transport.pump_species)
            if self.line.modules[sp].feed_concentration_mol_l
        ]
        return min(fed) if fed else 0.0

    def _reagent_presence(self, i: int) -> float:
        """0..1: how much of the coil holds a full mix of every pump's reagent."""
        feeds = [
            (s, self.pumps[sp].feed_initial and self.line.modules[sp].feed_concentration_mol_l)
            for s, sp in enumerate(self.transport.pump_species)
        ]
        feeds = [(s, c) for s, c in feeds if c]
        if not feeds:
            return 0.0
        tanks = self.transport.tanks[i]
        n = len(tanks[0])
        total = 0.0
        for k in range(n):
            total += min(tanks[s][k] / c for s, c in feeds)
        return min(1.0, len(feeds) * total / n)

    def _write_sensors(self, mid: str, dt: float) -> None:
        b = self.bindings[mid]
        for model, source, raw_of in b.sensors:
            fault = self.sensor_faults.get((mid, model.channel.name))
            model.write(source(), dt, fault, raw_of)

    # -- what tests and the host may look at --------------------------------------------------

    def pressure_bar(self, node: str) -> float:
        """Pressure (bar gauge) at the inlet of component ``node``; vessels are at 0."""
        i = self.net.index.get(node)
        if i is None:
            if node in self.vessels:
                return 0.0
            raise KeyError(f"no component {node!r}: allowed {', '.join(self._comps)}")
        return self.net.p[i]

    def peak_pressure_bar(self, node: str) -> float:
        return self.peak[self.net.index[node]]

    def component_ratings(self) -> dict[str, float]:
        """Pressure rating (bar) of every component that holds pressure."""
        return {c: self._comps[c].rating_bar for c in self.net.ids}

    def over_rating(self) -> list[str]:
        """Components whose peak pressure exceeded their rating so far."""
        return [c for c in self.net.ids if self.peak[self.net.index[c]] > self._comps[c].rating_bar]

    def compliance_ml_bar(self, node: str) -> float:
        return self.net.C[self.net.index[node]]

    def temperature_c(self, reactor_id: str) -> float:
        return self.reactors[reactor_id].t

    def heater_power_w(self, reactor_id: str) -> float:
        return self.reactors[reactor_id].heater_power_w

    def cutout_open(self, reactor_id: str) -> bool:
        return self.reactors[reactor_id].cutout_open

    def flow_ml_min(self, pump_id: str) -> float:
        """Liquid the pump actually delivers now (mL/min)."""
        return self.pumps[pump_id].delivered

    def through_ml_min(self, component: str) -> float:
        """Net forward flow through a component (mL/min)."""
        return self.net.outflow(self.net.index[component]) * 60.0

    def feed_ml(self, pump_id: str) -> float:
        return self.pumps[pump_id].feed_ml

    def dry_running(self, pump_id: str) -> bool:
        pump = self.pumps[pump_id]
        return pump.dry and pump.q_lag > 0.0

    def valve_position(self, valve_id: str) -> float:
        return self.valves[valve_id].x

    def vessel_ml(self, vessel_id: str) -> float:
        return self.vessels[vessel_id]

    @property
    def collected_ml(self) -> float:
        """Liquid in the collection vessels (mL)."""
        return sum(v for vid, v in self.vessels.items() if self._comps[vid].role == "collection")

    @property
    def waste_ml(self) -> float:
        return sum(v for vid, v in self.vessels.items() if self._comps[vid].role == "waste")

    def concentration(self, at: str) -> dict[str, float]:
        """mol/L of each reagent (named by its pump; a reactor's product and degradant:
        ``P``, ``D``) leaving ``at`` (a vessel: its mix)."""
        species = self.transport.species
        if at in self.vessels:
            vol_l = self.vessels[at] / 1000.0
            amounts = self.transport.vessel_amount.get(at, [0.0] * len(species))
            return {sp: (amounts[s] / vol_l if vol_l > 0 else 0.0) for s, sp in enumerate(species)}
        out = self.transport.outlet(self.net.index[at])
        return dict(zip(species, out, strict=True))

    def transport_stages(self) -> list[tuple[str, float, int]]:
        """(component, volume mL, tanks) in flow order."""
        stages = self.transport.stages
        return [(c, stages[i][0], stages[i][1]) for i, c in enumerate(self.net.ids)]

    def sensor_raw(self, module_id: str, channel: str):
        b = self.bindings.get(module_id)
        if b is None:
            return None
        for model, _, _ in b.sensors:
            if model.channel.name == channel:
                return model.last_raw
        raise KeyError(channel)

    def sensor_channels(self, module_id: str) -> list[str]:
        """Hardware sensor and status channels of a module (fault targets)."""
        return [
            ch["name"]
            for ch in self._channels[module_id]
            if ch["role"] in ("sensor", "status") and ch.get("driver") is not None
        ]

    def press_estop(self, module_id: str, pressed: bool = True) -> None:
        self.estops[module_id] = pressed

    # -- fault effects (scheduling lives in emulator.faults, power and network in
    #    emulator.emulation) ------------------------------------------------------------------

    def primary_sensor(self, module_id: str) -> str:
        """The channel a sensor fault without a channel hits: the first measuring one."""
        names = self.sensor_channels(module_id)
        for name in names:
            if self._units[module_id].get(name):
                return name
        return names[0]

    def apply_fault(self, kind: str, target: str, channel: str | None, params: dict):
        """Start a physical fault; returns a callable that clears it."""
        if kind == "clog":
            if params.get("sudden", False) or not params.get("rate"):
                clog = {"open": float(params.get("open", 0.0)), "rate": 0.0, "min_open": 0.0}
            else:
                clog = {
                    "open": 1.0,
                    "rate": float(params["rate"]),
                    "min_open": float(params.get("min_open", 0.0)),
                }
            self.clogs[target] = clog
            return lambda: self.clogs.pop(target, None)
        if kind == "leak":
            g = float(params.get("conductance_ml_min_bar", 0.2)) / 60.0
            self.leaks[target] = g
            return lambda: self.leaks.pop(target, None)
        if kind in ("heater-stuck-on", "heater-open"):
            th = self.reactors[target]
            attr = "heater_stuck_on" if kind == "heater-stuck-on" else "heater_open"
            setattr(th, attr, True)
            return lambda: setattr(th, attr, False)
        if kind == "exotherm":
            th = self.reactors[target]
            # Default: enough to outrun the losses from where the reactor is now.
            heat = float(params.get("heat_w", 10.0 + 1.5 * th.ua * max(th.t - th.ambient, 0.0)))
            th.fault_exotherm = {
                "heat_w": heat,
                "t_ref_c": float(params.get("t_ref_c", th.t)),
                "doubling_c": float(params.get("doubling_c", 10.0)),
                "max_w": float(params.get("max_w", 10.0 * heat)),
                "needs_reagents": bool(params.get("needs_reagents", False)),
                "enthalpy_kj_mol": params.get("enthalpy_kj_mol"),
            }
            return lambda: setattr(th, "fault_exotherm", None)
        if kind == "pump-stall":
            pump = self.pumps[target]
            pump.stalled = True
            return lambda: setattr(pump, "stalled", False)
        if kind == "dry-feed":
            pump = self.pumps[target]
            pump.feed_ml = 0.0

            def refill():
                pump.feed_ml = pump.feed_initial

            return refill
        if kind.startswith("sensor-"):
            name = channel or self.primary_sensor(target)
            if name not in self.sensor_channels(target):
                raise ValueError(
                    f"{kind} on {target}: channel {name!r} is not a hardware sensor: allowed "
                    + ", ".join(self.sensor_channels(target))
                )
            fault = SensorFault()
            if kind == "sensor-open":
                fault.wire = "open"
            elif kind == "sensor-short":
                fault.wire = "short"
            elif kind == "sensor-stuck":
                value = params.get("value")
                if value is None:
                    value = self._current_reading(target, name)
                fault.stuck = float(value)
            elif kind == "sensor-drift":
                fault.drift_rate = float(params.get("rate", 0.1))
            else:
                raise ValueError(f"unknown sensor fault {kind!r}")
            key = (target, name)
            self.sensor_faults[key] = fault
            return lambda: self.sensor_faults.pop(key, None)
        raise ValueError(f"fault kind {kind!r} has no physical effect in the plant")

    def _current_reading(self, module_id: str, channel: str) -> float:
        b = self.bindings.get(module_id)
        if b is not None:
            for model, source, _ in b.sensors:
                if model.channel.name == channel:
                    return model.value if model.value is not None else source()
        return 0.0  # a module without power has no reading to freeze
