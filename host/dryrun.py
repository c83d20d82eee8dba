"""The dry runs: a recipe on an emulated line.  The host's only way into the emulator
besides the emulator's own commands (tests/test_architecture.py names them all).

``run_in_process`` is the embedded default (``skid demo``, ``skid run --emulate``): the
coordinator, the emulated modules (real edge runtimes) and the plant emulator share one
process and one simulated clock, talking through the in-process bus exactly the CBOR
messages they would send over MQTT.  It runs as fast as the CPU allows.

``run_emulated_over_broker`` (``skid run --emulate --broker URL``) launches the line as
separate processes (one ``skid edge`` per module, one ``skid emulate`` owning the plant;
``host/launcher.py``) on a shared scaled clock and coordinates them over a real broker
with ``host.session.run_over_broker``, the same loop that runs real modules.

Both are configurations of the one run orchestration, ``host.session.run_recipe``: the
in-process run is an ``InProcessSite`` (the emulation's clock, the in-process bus, the
fault schedule), the broker runs a ``host.session.BrokerSite``.
"""

from __future__ import annotations

from collections.abc import Callable

from emulator.emulation import LineEmulation
from emulator.faults import FaultSchedule
from host.coordinator import Coordinator, Summary
from host.inproc import attach_emulation
from host.launcher import EmulatedLineProcesses
from host.session import Site, prepare_and_warn, run_over_broker, run_recipe
from host.transport import InProcessBus
from protocol import messages
from protocol.topics import host_topic


class EmulationClock:
    """The in-process run's clock: the emulation's simulated time; ``advance()`` is one
    emulation step (plant, modules, and what the bus carries to them)."""

    def __init__(self, emu: LineEmulation):
        self.emu = emu
        self.host_ms = emu.host_ms

    def now_ms(self) -> int:
        return self.emu.now_ms

    def advance(self) -> None:
        self.emu.step()


class InProcessSite(Site):
    """The emulated modules and plant in this process, on an ``InProcessBus``, with
    ``faults`` injected when due."""

    def __init__(
        self, line, say: Callable[[str], None], *, recipe_name: str, faults=(), seed: int = 0
    ):
        self.line = line
        self.recipe_name = recipe_name
        self.say = say
        self.line_id = line.id
        self.bus = InProcessBus()
        self.plant = self.emu = LineEmulation(line, seed=seed)
        self.clock = EmulationClock(self.emu)
        state_topic = host_topic(line.id, "state")
        self.transport = self.bus.client(
            f"{line.id}-host", will=(state_topic, messages.build_state(False, 0), 1, True)
        )
        self.hashes = dict(self.emu.hashes)
        self.metadata = {}
        self.schedule = FaultSchedule(list(faults))

    def banner(self, run_id: str) -> str:
        return f"skid: run {run_id}: line {self.line.id}, recipe {self.recipe_name}"

    def start(self) -> None:
        # The modules' side of the bus (host/inproc.py): after the host subscribed, so it
        # hears the births.
        attach_emulation(self.emu, self.bus, self.line_id)

    def before_turn(self, coord: Coordinator) -> None:
        emu = self.emu
        now_s = emu.now_ms / 1000.0
        for action, fault in self.schedule.due(now_s, coord.access.value):
            if action == "apply":
                emu.apply_fault(fault)
            else:
                emu.clear_fault(fault)
            coord.note("fault", f"emulator: fault {action}: {fault}")
            self.say(f"t={now_s:7.1f} s  emulator: fault {action}: {fault}")

    def outputs_safe(self, coord: Coordinator) -> bool:
        emu = self.emu
        return all(mid in emu.powered_off or node.all_safe() for mid, node in emu.nodes.items())


def run_in_process(
    line_path,
    recipe_path,
    *,
    faults=(),
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    on_bus: Callable[[InProcessBus], None] | None = None,
    **options,
) -> Summary:
    """Run ``recipe_path`` on the emulated ``line_path`` in this process; return the summary
    (``options``: those of ``host.session.run_recipe``).  ``on_bus(bus)`` is called with the
    run's in-process bus before the modules birth (the web view subscribes there).

    ``should_abort()`` (polled every step) returns a reason to abort (e.g. Ctrl-C was
    pressed), after which the recipe's shutdown sequence runs to its end.  ``on_tick(coord,
    emu)`` is for tests and fault scripts.
    """
    say = log or (lambda text: None)
    prep = prepare_and_warn(line_path, recipe_path, say)
    site = InProcessSite(prep.line, say, recipe_name=prep.recipe.name, faults=faults, seed=seed)
    if on_bus is not None:
        on_bus(site.bus)
    return run_recipe(prep, site, log=say, **options)


def run_emulated_over_broker(
    line_path,
    recipe_path,
    broker_url: str,
    *,
    speed: float = 10.0,
    faults=(),
    seed: int = 0,
    line_id: str | None = None,
    log: Callable[[str], None] | None = None,
    micropython_modules=(),
    **options,
) -> Summary:
    """Launch the line at ``line_path`` as separate processes on ``broker_url`` (a fresh
    line id unless ``line_id``), ``speed`` x real time, with ``faults`` injected, and run
    ``recipe_path`` on it (``options``: those of ``run_over_broker``).
    ``micropython_modules``: modules run under the MicroPython Unix port."""

    def launch(epoch: float) -> EmulatedLineProcesses:
        return EmulatedLineProcesses(
            line_path,
            broker_url,
            line_id=line_id,  # None: a fresh one, so runs on one broker never mix
            speed=speed,
            faults=list(faults),
            seed=seed,
            log=log or (lambda text: None),
            epoch=epoch,
            micropython_modules=micropython_modules,
        )

    return run_over_broker(
        line_path,
        recipe_path,
        broker_url,
        launch=launch,
        speed=speed,
        line_id=line_id,
        log=log,
        **options,
    )
