"""The heated coil reactor: one lumped heat balance for block, coil and contents.

    M dT/dt = P_heater + Q_reaction - UA (T - T_ambient) - m_dot c_p (T - T_inlet)

``M`` thermal mass (J/K), ``UA`` loss to ambient (W/K), ``m_dot c_p`` the heat the
flowing liquid carries away (W/K).  Over one tick the reaction heat is held constant and
the linear rest is integrated exactly, so any tick length is stable.

Reaction heat (``exotherm``) rises with temperature, doubling every ``doubling_c``:
``heat_w * 2 ** ((T - t_ref_c) / doubling_c)``, capped at ``max_w`` (what the reagent
supply can release), and scaled by the reagents present in the coil when
``needs_reagents``.  When that rise outpaces the losses the temperature runs away: the
case the module's interlocks and the independent thermal cut-out exist for.

With ``enthalpy_kj_mol`` the heat is also bounded by the reagents it consumes:
``heat = min(law, moles reacting per second x enthalpy)``.  The coil holds an inventory
of unreacted limiting reagent (``unreacted_mol``): the feed brings it in (the limiting
concentration entering the coil x flow), the reaction consumes it (heat / enthalpy),
the flow washes the rest out (well mixed: flow / volume per second).  So a coil whose
feeds stopped, or that was flushed with the other feed, runs out of heat source once
its charge is spent; and no reaction can release more than its reagents hold.  Without
``enthalpy_kj_mol`` the heat source is unbounded (an idealised source for tests of the
detections, not a chemistry).

The thermal cut-out (a bimetal switch in the heater supply) opens at ``trip_c``, whatever
the firmware does.  Without ``reset_c`` it latches open (a limiter: only a hand on its
reset button closes it, so a welded heater switch cannot cycle the coil back up); with
``reset_c`` it closes again below that (a thermostat).
"""

from __future__ import annotations

import math

from line.model import Component, Line


class ReactorThermal:
    def __init__(self, line: Line, comp: Component):
        self.id = comp.id
        self.mass = comp.thermal_mass_j_k
        self.ua = comp.ua_w_k
        self.heater_w = comp.heater_w
        self.ambient = line.ambient_c
        self.t = line.ambient_c
        self.exotherm: dict | None = comp.params.get("exotherm")
        self.cutouts = [
            (p.trip_c, p.params.get("reset_c"))
            for p in line.protections
            if p.kind == "thermal_cutout" and p.at == comp.id
        ]
        self.cutout_open = False
        self.heater_stuck_on = False
        self.heater_open = False
        self.fault_exotherm: dict | None = None
        self.heater_power_w = 0.0
        self.reaction_w = 0.0
        self.volume_ml = float(comp.params.get("volume_ml") or 0.0)
        self.unreacted_mol = 0.0  # limiting reagent in the coil, not yet reacted
        self.max_t = self.t

    def reaction_heat(self, reagent_presence, dt: float = 0.0) -> float:
        """``reagent_presence()`` -> 0..1, asked only when an exotherm needs reagents.
        With ``dt`` > 0 an exotherm with ``enthalpy_kj_mol`` consumes the coil's
        unreacted reagent (at most all of it in ``dt``) and is bounded by it."""
        total = 0.0
        for ex in (self.exotherm, self.fault_exotherm):
            if not ex:
                continue
            q = ex["heat_w"] * 2.0 ** ((self.t - ex["t_ref_c"]) / ex["doubling_c"])
            q = min(q, ex["max_w"])
            if ex.get("needs_reagents", True):
                q *= reagent_presence()
            enthalpy_j = (ex.get("enthalpy_kj_mol") or 0.0) * 1000.0
            if enthalpy_j > 0.0 and dt > 0.0:
                q = min(q, self.unreacted_mol * enthalpy_j / dt)
                self.unreacted_mol -= q * dt / enthalpy_j
            total += q
        return total

    def _feed_reagent(self, dt: float, flow_ml_s: float, limiting_in) -> None:
        """The coil's unreacted limiting reagent: what the flow brings in (``limiting_in()``
        mol/L entering) less what it washes out (well mixed)."""
        if limiting_in is None or self.volume_ml <= 0.0:
            return
        flow = max(flow_ml_s, 0.0)
        washed = min(1.0, flow * dt / self.volume_ml)
        self.unreacted_mol -= self.unreacted_mol * washed
        self.unreacted_mol += limiting_in() * flow * dt / 1000.0
        if self.unreacted_mol < 0.0:
            self.unreacted_mol = 0.0

    def step(
        self,
        dt: float,
        duty: float,
        flow_ml_s: float,
        rho_cp_j_mlk: float,
        t_inlet: float,
        reagent_presence,
        limiting_in=None,
    ) -> None:
        """``limiting_in()``: mol/L of the limiting reagent entering the coil (None: no
        reagent tracking; an exotherm with an enthalpy then has nothing to consume)."""
        for trip, reset in self.cutouts:
            if self.t >= trip:
                self.cutout_open = True
            elif reset is not None and self.t <= reset and self.cutout_open:
                self.cutout_open = False
        if self.heater_open or self.cutout_open:
            power = 0.0
        elif self.heater_stuck_on:
            power = self.heater_w
        else:
            power = self.heater_w * min(max(duty, 0.0), 1.0)
        self.heater_power_w = power
        self._feed_reagent(dt, flow_ml_s, limiting_in)
        self.reaction_w = self.reaction_heat(reagent_presence, dt)
        flow_w_k = max(flow_ml_s, 0.0) * rho_cp_j_mlk
        k = self.ua + flow_w_k
        source = power + self.reaction_w + self.ua * self.ambient + flow_w_k * t_inlet
        if k <= 0.0:
            self.t += source * dt / self.mass
        else:
            t_inf = source / k
            self.t = t_inf + (self.t - t_inf) * math.exp(-k * dt / self.mass)
        if self.t > self.max_t:
            self.max_t = self.t
