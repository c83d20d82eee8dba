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
        self.max_t = self.t

    def reaction_heat(self, reagent_presence) -> float:
        """``reagent_presence()`` -> 0..1, asked only when an exotherm needs reagents."""
        total = 0.0
        for ex in (self.exotherm, self.fault_exotherm):
            if not ex:
                continue
            q = ex["heat_w"] * 2.0 ** ((self.t - ex["t_ref_c"]) / ex["doubling_c"])
            q = min(q, ex["max_w"])
            if ex.get("needs_reagents", True):
                q *= reagent_presence()
            total += q
        return total

    def step(
        self,
        dt: float,
        duty: float,
        flow_ml_s: float,
        rho_cp_j_mlk: float,
        t_inlet: float,
        reagent_presence,
    ) -> None:
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
        self.reaction_w = self.reaction_heat(reagent_presence)
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
