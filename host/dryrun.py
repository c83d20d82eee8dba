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
"""

from __future__ import annotations

from collections.abc import Callable

from emulator.emulation import LineEmulation
from emulator.faults import FaultSchedule
from host.coordinator import Coordinator, Summary
from host.inproc import attach_emulation
from host.launcher import EmulatedLineProcesses
from host.record import RunRecord
from host.session import (
    PROGRESS_EVERY_S,
    SETTLE_AFTER_MS,
    Progress,
    RunLimits,
    judge_end,
    prepare,
    run_over_broker,
)
from host.transport import InProcessBus
from protocol import messages
from protocol.topics import host_topic


def run_in_process(
    line_path,
    recipe_path,
    *,
    faults=(),
    seed: int = 0,
    runs_dir="runs",
    metadata: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
    max_s: float = 3600.0,
    should_abort: Callable[[], str | None] | None = None,
    on_tick: Callable[[Coordinator, object], None] | None = None,
    operator_key: bytes | None = None,
) -> Summary:
    """Run ``recipe_path`` on the emulated ``line_path`` in this process; return the summary.

    ``should_abort()`` (polled every step) returns a reason to abort (e.g. Ctrl-C was
    pressed), after which the recipe's shutdown sequence runs to its end.  ``on_tick(coord,
    emu)`` is for tests and fault scripts.
    """
    say = log or (lambda text: None)
    prep = prepare(line_path, recipe_path)
    for w in prep.warnings:
        say(f"warning: {w}")
    line = prep.line
    bus = InProcessBus()
    emu = LineEmulation(line, seed=seed)
    state_topic = host_topic(line.id, "state")
    host = bus.client(
        f"{line.id}-host", will=(state_topic, messages.build_state(False, 0), 1, True)
    )
    record = RunRecord.create(
        runs_dir,
        line.id,
        line_hash=prep.line_hash,
        recipe_name=prep.recipe.name,
        recipe_hash=prep.recipe_hash,
        config_hashes={mid: h.hex() for mid, h in emu.hashes.items()},
        metadata=dict(metadata or {}),
        now_ms=emu.host_ms(),
    )
    coord = Coordinator(
        line,
        prep.recipe,
        host,
        record,
        line_id=line.id,
        now_ms=emu.now_ms,
        host_ms=emu.host_ms,
        expected_hashes=dict(emu.hashes),
        log=say,
        operator_key=operator_key,
    )
    attach_emulation(emu, bus, line.id)  # after the host subscribed: it hears the births
    say(f"skid: run {record.run_id}: line {line.id}, recipe {prep.recipe.name}")
    schedule = FaultSchedule(list(faults))
    progress = Progress(say, progress_every_s)
    value_of = coord.access.value
    limits = RunLimits(coord, max_s, emu.now_ms, should_abort)
    try:
        while True:
            now_s = emu.now_ms / 1000.0
            for action, fault in schedule.due(now_s, value_of):
                if action == "apply":
                    emu.apply_fault(fault)
                else:
                    emu.clear_fault(fault)
                coord.note("fault", f"emulator: fault {action}: {fault}")
                say(f"t={now_s:7.1f} s  emulator: fault {action}: {fault}")
            emu.step()
            coord.step(emu.now_ms)
            if on_tick is not None:
                on_tick(coord, emu)
            progress(coord, emu.now_ms)
            if coord.finished or limits.give_up(emu.now_ms):
                break
        settle_end = emu.now_ms + SETTLE_AFTER_MS
        while emu.now_ms < settle_end:
            emu.step()
            coord.step(emu.now_ms)
        outputs_safe = all(
            mid in emu.powered_off or node.all_safe() for mid, node in emu.nodes.items()
        )
        judge_end(coord, outputs_safe)
        summary = coord.close()
    finally:
        record.close()
    return summary


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
    **options,
) -> Summary:
    """Launch the line at ``line_path`` as separate processes on ``broker_url`` (a fresh
    line id unless ``line_id``), ``speed`` x real time, with ``faults`` injected, and run
    ``recipe_path`` on it (``options``: those of ``run_over_broker``)."""

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
