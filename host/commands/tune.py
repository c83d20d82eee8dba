"""``skid tune LINE MODULE LOOP``: commission a PID loop by a relay-feedback autotune.

Brings the loop to a test temperature with its present gains, then (on the operator's
authorisation: a prompt, or ``--yes``) switches it to a bounded relay test, measures the
ultimate gain and period, and proposes Tyreus-Luyben gains with a derivative filter and
setpoint weighting (host/tune.py says why).  The module's interlocks stay active; a trip
ends the test with the output safe.  ``--write`` puts the proposed gains into the
module's board config (old and new values shown, comments kept) and reports the new config
hash: flash the new config; the line's attach check then expects that hash.

``--emulate`` runs the test on the emulated line in this process (host/tune_emulated.py);
``--broker URL`` on the line's module over MQTT (host/tune_broker.py: signed commands and
leases; refused, with nothing changed, unless the module runs its board config's hash, is
at rest and no other host leases the line).

Exit codes: 0 tuned, 3 the test was ended (trip, ceiling, timeout, module lost or stopped
by someone else, Ctrl-C) and the module made safe, 2 usage error, refused or not
authorised, 1 anything else.
"""

from __future__ import annotations

import json
import sys
import time

from edge.boardconfig import load_board_config
from host.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from host.tune import (
    DEFAULT_AMPLITUDE,
    DEFAULT_HYSTERESIS,
    TuneError,
    hold,
    loop_table,
    plan_test,
    propose,
    relay_test,
    write_gains,
)
from line.loader import load_line
from protocol.topics import TopicError, validate_id

# host.tune_emulated (it loads the emulator) and host.tune_broker (MQTT) are imported in
# run(), for the path asked for: `skid --help` imports every command module, and the
# broker path must never load the emulator (tests/test_architecture.py).

EXIT_ENDED = 3


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="relay-feedback autotune of a module's PID loop (commissioning)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("line", help="line file")
    p.add_argument("module", help="module id on the line")
    p.add_argument("loop", help="PID loop name in the module's board config")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--emulate", action="store_true", help="tune the emulated module")
    where.add_argument("--broker", metavar="URL", help="tune the real module on this broker")
    p.add_argument("--write", action="store_true", help="write the gains into the board config")
    p.add_argument("--at", type=float, help="test temperature (default: 60%% up to the ceiling)")
    p.add_argument("--amplitude", type=float, default=DEFAULT_AMPLITUDE, help="relay amplitude")
    p.add_argument(
        "--hysteresis", type=float, default=DEFAULT_HYSTERESIS, help="relay hysteresis (degC)"
    )
    p.add_argument(
        "--pressure-bar", type=float, default=0.0, help="gauge pressure held during the test"
    )
    p.add_argument("--seed", type=int, default=0, help="with --emulate: emulator seed")
    p.add_argument(
        "--line-id",
        metavar="ID",
        help="with --broker: the line id in the topics (default: the line's)",
    )
    p.add_argument(
        "--epoch",
        type=float,
        help="with --broker, modules emulated elsewhere: their shared clock's origin (Unix "
        "seconds, as given to their `skid edge --epoch`); with --speed",
    )
    p.add_argument(
        "--speed", type=float, default=1.0, help="with --epoch: simulated seconds per second"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="with --broker: unsigned commands and leases (a module run with --insecure)",
    )
    p.add_argument("--yes", action="store_true", help="authorise the relay test without asking")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=run)


def run(args) -> int:
    say = print
    try:
        line = load_line(args.line)
        if args.module not in line.modules:
            raise TuneError(f"no module {args.module!r} on line {line.id}")
        cfg = _board(line, args.module)
        table = loop_table(cfg, args.loop)
        plan = plan_test(
            line, cfg, args.loop, args.at, args.amplitude, args.hysteresis, args.pressure_bar
        )
        _check_broker_options(args)
    except (TuneError, OSError, ValueError) as exc:
        print(f"skid tune: {exc}", file=sys.stderr)
        return EXIT_USAGE
    say(
        f"skid tune: {args.module}.{args.loop} at {plan.at_c:g} degC; ceiling {plan.ceiling_c:g} "
        f"degC (trip {plan.trip_c}, boiling {plan.boiling_c and round(plan.boiling_c, 1)}); "
        f"relay +-{plan.amplitude:g}, hysteresis {plan.hysteresis_c:g}"
    )
    if args.broker:
        return _tune_over_broker(args, line, table, plan, say)
    if not (args.yes or _authorised(args.module)):
        print("skid tune: not authorised: nothing was changed", file=sys.stderr)
        return EXIT_USAGE
    from host.tune_emulated import emulated_link  # lazy: loads the emulator (see top)

    link = emulated_link(args.line, args.module, seed=args.seed)
    return _tune(args, link, table, plan, line.modules[args.module].board, say)


def _check_broker_options(args) -> None:
    if not args.broker and (args.line_id or args.epoch is not None or args.insecure):
        raise TuneError("--line-id, --epoch and --insecure need --broker")
    if args.line_id:
        try:
            validate_id("line", args.line_id)
        except TopicError as exc:
            raise TuneError(f"--line-id: {exc}") from None
    if not args.speed > 0:
        raise TuneError(f"--speed {args.speed:g}: must be > 0")


def _tune_over_broker(args, line, table, plan, say) -> int:
    """Connect, check the module (host.tune_broker.BrokerLink.attach), ask, start, tune."""
    from host.session import SharedClock  # lazy: MQTT and the run machinery (see top)
    from host.transport import MqttTransport, TransportError
    from host.tune_broker import BrokerLink, client_id, expected_hash, module_key

    line_id = args.line_id or line.id
    emulated = args.epoch is not None
    comp = line.modules[args.module]
    try:
        key = module_key(comp.board, args.insecure)
        expected = expected_hash(line, args.module, emulated)
        transport = MqttTransport(args.broker, client_id(line_id))
        transport.connect()
    except (TuneError, TransportError, ValueError) as exc:
        print(f"skid tune: {exc}", file=sys.stderr)
        reason = getattr(exc, "reason", "usage")
        return EXIT_USAGE if reason == "usage" or isinstance(exc, TuneError) else EXIT_FAILURE
    clock = SharedClock(args.epoch if emulated else time.time(), args.speed if emulated else 1.0)
    link = BrokerLink(transport, line_id, args.module, comp.kind, clock, key)
    say(f"skid tune: line {line_id} on {args.broker}" + (" (signed)" if key else ""))
    try:
        link.attach(expected)
    except TuneError as exc:
        link.close()
        print(f"skid tune: {exc}: nothing was changed", file=sys.stderr)
        return EXIT_USAGE
    if not (args.yes or _authorised(args.module)):
        link.close()
        print("skid tune: not authorised: nothing was changed", file=sys.stderr)
        return EXIT_USAGE
    try:
        link.start_module()
    except (TuneError, KeyboardInterrupt) as exc:
        _make_safe(link, args.loop, table)
        print(f"skid tune: {exc or 'interrupted'}", file=sys.stderr)
        return EXIT_FAILURE
    return _tune(args, link, table, plan, comp.board, say)


def _tune(args, link, table, plan, board_path, say) -> int:
    measure = table["measure"]
    try:
        bias = hold(link, args.loop, measure, plan, say)
        result = relay_test(link, args.loop, measure, plan, bias, say)
    except (TuneError, KeyboardInterrupt) as exc:
        why = str(exc) if isinstance(exc, TuneError) else "interrupted by the operator (Ctrl-C)"
        _make_safe(link, args.loop, table)
        say(f"skid tune: test ended: {why}")
        _summary(args, {"outcome": "ended", "reason": why})
        return EXIT_ENDED
    _make_safe(link, args.loop, table)
    gains = propose(result.ku, result.pu_s)
    say(
        f"ultimate gain Ku {result.ku:.4g} per degC, period Pu {result.pu_s:.3g} s "
        f"(oscillation +-{result.amplitude_c:.3g} degC over {len(result.cycles)} cycles)"
    )
    say("proposed (Tyreus-Luyben, derivative filter Td/2, setpoint weight 0.5):")
    for k, v in gains.items():
        say(f"  {k} = {v:g}   (now {table.get(k)})")
    out = {"outcome": "tuned", "ku": result.ku, "pu_s": result.pu_s, "gains": gains}
    if args.write:
        try:
            w = write_gains(board_path, args.loop, gains)
        except TuneError as exc:
            say(f"skid tune: {exc}")
            return EXIT_FAILURE
        say(f"wrote {board_path} [pid.{args.loop}]:")
        for k in gains:
            say(f"  {k}: {w['old'][k]} -> {w['new'][k]}")
        say(f"config hash {w['old_hash']} -> {w['new_hash']}: flash it; attach checks the new hash")
        out["written"] = {"path": str(board_path), **w}
    _summary(args, out)
    return EXIT_OK


def _make_safe(link, loop, table) -> None:
    """Relay off (if still on), setpoint to its minimum, module stopped: heater safe."""
    for op, a in (
        ("configure", {"config": {"loop": loop, "relay": "stop"}}),
        ("state", {"command": "stop"}),
    ):
        try:
            link.command(op, a)
        except Exception:  # the module may be unreachable: its lease loss makes it safe
            pass
    try:
        link.set_setpoint(loop, table["setpoint_min"])
    except Exception:
        pass
    link.advance(1.0)
    link.close()


def _authorised(module: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(
        f"The relay test drives {module}'s heater open-loop (bounded, interlocks active). "
        f"Type the module id to authorise: "
    )
    return answer.strip() == module


def _board(line, module):
    return load_board_config(line.modules[module].board)


def _summary(args, out: dict) -> None:
    if args.json:
        print(json.dumps(out, default=str))
