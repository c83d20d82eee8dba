"""``skid run LINE RECIPE``: run a recipe on a line, record it, and say how it ended.

Where the modules are:

* ``--emulate`` (no broker): emulated modules and plant in this process, on a simulated
  clock, through the in-process bus — as fast as the CPU allows;
* ``--emulate --broker URL``: the emulated line as separate processes (one ``skid edge``
  per module, one ``skid emulate`` for the plant) on a real MQTT broker, on a shared clock
  ``--speed`` times real time;
* ``--broker URL`` alone: the real modules of the line, on that broker.

The line and the recipe are validated before anything moves.  Ctrl-C or SIGTERM runs the
recipe's shutdown sequence (a second one leaves at once: every module still protects
itself on lease loss).  Progress goes to stderr; ``--json`` prints one JSON object as the
last line of stdout: run_id, line_id, outcome, reason, modules, trips (first-out first),
peaks of every sensor channel, record (the run record's path).

Exit codes: 0 completed, 3 aborted and brought to a safe state, 2 usage or configuration
error (nothing was started), 1 anything else.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from host.cli import EXIT_ABORTED, EXIT_DEVIATIONS, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from host.commands.user import add_users_file
from host.commands.view import add_view_options
from protocol.topics import TopicError, validate_id

# The run machinery (line loader, coordinator, MQTT, the SQLite record, the report, the
# emulator) is imported when a run starts, in the functions below: host/cli.py imports
# every command module for `skid --help`, and these would about double its start-up time.

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEED = 10.0


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a recipe on a line (emulated or real), recorded",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
    )
    p.add_argument("line", help="line file (examples/lines/*.toml)")
    p.add_argument("recipe", help="recipe file (examples/recipes/*.toml)")
    add_run_options(p)
    p.set_defaults(func=run)


def add_run_options(p) -> None:
    p.add_argument("--emulate", action="store_true", help="emulated modules and plant")
    p.add_argument("--broker", metavar="URL", help="MQTT broker, e.g. mqtt://localhost:1883")
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per second: broker mode with --emulate (default "
        f"{DEFAULT_SPEED:g}), and in process with --view (default 1)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:TARGET@SECONDS",
        help="with --emulate: inject a fault (repeatable), e.g. clog:reactor1@420",
    )
    p.add_argument("--seed", type=int, default=0, help="emulator random seed")
    p.add_argument("--runs-dir", default="runs", help="where run records go (default ./runs)")
    p.add_argument("--batch", help="batch id recorded with the run")
    p.add_argument("--lot", help="reagent lot(s) recorded with the run")
    p.add_argument(
        "--user",
        metavar="NAME",
        help="who runs it, logged in (password from $SKID_PASSWORD or a prompt); recorded "
        "as the run's operator",
    )
    p.add_argument(
        "--operator",
        help="deprecated (use --user): a name recorded as the operator, not authenticated "
        "(default 'operator')",
    )
    add_users_file(p)
    p.add_argument("--max-s", type=float, default=3600.0, help="give up after this run time")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the report")
    p.add_argument(
        "--line-id",
        metavar="ID",
        help="broker mode: the line id in the topics, for `skid status`/`skid stop` "
        "(default: the line's; with --emulate a fresh one, printed at start)",
    )
    p.add_argument(
        "--epoch",
        type=float,
        help="broker mode, modules emulated elsewhere: their shared clock's origin "
        "(Unix seconds, as given to their `skid edge --epoch`); with --speed",
    )
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="broker mode: re-attach a restarted coordinator to RUN (its record continues, "
        "the gap is recorded, and the line is shut down in order)",
    )
    p.add_argument(
        "--operator-key-file",
        default=os.environ.get("SKID_OPERATOR_KEY_FILE"),
        metavar="FILE",
        help="key that operators' resume/manual/command/reset requests must be signed with "
        "(default $SKID_OPERATOR_KEY_FILE; without one those requests are refused over the "
        "broker)",
    )
    add_runtime_options(p)
    add_view_options(p, with_flag=True)
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def add_runtime_options(p) -> None:
    """``--runtime`` and ``--micropython-modules`` (host/micropython_unix.py)."""
    p.add_argument(
        "--runtime",
        choices=("cpython", "micropython"),
        default="cpython",
        help="with --emulate --broker: run every module under CPython (default) or as a "
        "MicroPython Unix-port process (the board's own link, sockets and asyncio)",
    )
    p.add_argument(
        "--micropython-modules",
        metavar="ID,...",
        help="with --emulate --broker: run only these modules under MicroPython",
    )


def micropython_modules(args, module_ids) -> list[str]:
    """The modules to run under MicroPython, from ``--runtime``/``--micropython-modules``."""
    if args.micropython_modules:
        return [m for m in args.micropython_modules.split(",") if m]
    return list(module_ids) if args.runtime == "micropython" else []


def run(args) -> int:
    return execute(args, args.line, args.recipe, command="run")


def execute(args, line_path, recipe_path, command: str) -> int:
    """Check the options, run the recipe where ``args`` say, report; the exit code."""
    from emulator.faults import FaultSpecError  # start-up cost: see the imports above
    from host.control import ControlError
    from host.session import RunRefused
    from host.transport import TransportError
    from line.loader import LineError

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    problem = _option_problem(args)
    if problem:
        log(f"skid {command}: {problem}")
        return EXIT_USAGE
    args.speed = resolve_speed(args)
    try:
        faults = _faults(line_path, args.fault)
    except (LineError, FaultSpecError) as exc:
        log(f"skid {command}: {exc}")
        return EXIT_USAGE
    try:
        operator_key = _operator_key(args.operator_key_file)
    except (OSError, ControlError) as exc:
        log(f"skid {command}: --operator-key-file: {exc}")
        return EXIT_USAGE
    try:
        args.identity = _run_operator(args)
    except ValueError as exc:  # host.users.UserError
        log(f"skid {command}: {exc}")
        return EXIT_USAGE
    interrupts: list[str] = []
    old = _trap_signals(interrupts, command, log)
    try:
        options = dict(
            runs_dir=args.runs_dir,
            metadata=_metadata(args, command),
            log=log,
            max_s=args.max_s,
            should_abort=lambda: interrupts[0] if interrupts else None,
            operator_key=operator_key,
        )
        view = _start_view(args, line_path, operator_key, options, log)
        try:
            summary = _dispatch(args, line_path, recipe_path, faults, options)
        finally:
            if view is not None:
                view.close()
    except ValueError as exc:  # the view's --bind/--tls refused (host.view.server.BindError)
        log(f"skid {command}: {exc}")
        return EXIT_USAGE
    except RunRefused as exc:
        log(f"skid {command}: refused before anything moved:")
        for problem in exc.problems:
            log(f"  - {problem}")
        return EXIT_USAGE
    except TransportError as exc:
        log(f"skid {command}: {exc}")
        return EXIT_USAGE if exc.reason == "usage" else EXIT_FAILURE
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return _finish(args, summary, command, log)


def _option_problem(args) -> str | None:
    """What is wrong with the combination of options (nothing was started), or None."""
    if args.resume and args.emulate:
        return (
            "--resume re-attaches to modules that are still out there; "
            "it cannot be combined with --emulate (which launches a new line)"
        )
    if (args.resume or args.epoch is not None or args.line_id) and not args.broker:
        return "--resume, --epoch and --line-id need --broker"
    if args.line_id:
        try:
            validate_id("line", args.line_id)
        except TopicError as exc:
            return f"--line-id: {exc}"
    if args.fault and not args.emulate:
        return "--fault needs --emulate (faults are injected into the emulator)"
    wants_mpy = args.runtime == "micropython" or args.micropython_modules
    if wants_mpy and not (args.emulate and args.broker):
        return (
            "--runtime micropython and --micropython-modules need --emulate --broker URL "
            "(each module is its own process on the broker; in process everything runs "
            "under this CPython)"
        )
    if not args.emulate and not args.broker:
        return (
            "say where the modules are: --emulate (in this process), "
            "--emulate --broker URL (emulated, over MQTT) or --broker URL (real modules)"
        )
    return None


def resolve_speed(args) -> float:
    """``--speed`` as given; else 1 for an in-process run with ``--view`` (a person
    watches it: ``skid demo --view``), else ``DEFAULT_SPEED``."""
    if args.speed is not None:
        return args.speed
    return 1.0 if getattr(args, "view", False) and not args.broker else DEFAULT_SPEED


def _start_view(args, line_path, operator_key, options: dict, log):
    """With ``--view``: serve the live view of this run (``host/view/serve.py``) and hook it
    into ``options``; the view (``close()`` it), or None.  BindError when refused."""
    if not args.view:
        return None
    from host.commands.view import view_options
    from host.view.serve import BrokerView, InProcessView
    from line.loader import load_line

    line = load_line(line_path)
    view_opts = view_options(args, operator_key)
    if args.broker:
        if not args.line_id:  # the launcher would pick a fresh one; the view must know it
            from host.launcher import fresh_line_id

            args.line_id = fresh_line_id(line.id) if args.emulate else line.id
        view = BrokerView(line, args.line_id, args.broker, view_opts)
    else:
        view = InProcessView(line, view_opts, args.speed)
        options["on_bus"] = view.on_bus
        options["on_tick"] = view.on_tick
    log(f"skid {args.command}: live view at {view.url}")
    if operator_key is None:
        log(f"skid {args.command}: no --operator-key-file: resume is unavailable from the view")
    return view


def _faults(line_path, options: list[str]) -> list:
    """The ``--fault`` options, checked against the line (LineError, FaultSpecError)."""
    from emulator.faults import line_targets, parse_fault_option  # start-up cost
    from line.loader import load_line

    line = load_line(line_path)
    modules, channels = line_targets(line)
    return [parse_fault_option(text, modules, channels) for text in options]


def _operator_key(path) -> bytes | None:
    from host.control import read_operator_key  # start-up cost

    return None if not path else read_operator_key(path)


def _run_operator(args) -> dict[str, str]:
    from host.users import run_operator  # lazy: start-up (argon2)

    if args.operator:
        print(
            "skid: --operator is deprecated (recorded as not authenticated): use --user",
            file=sys.stderr,
        )
    return run_operator(args.user, args.operator, args.users_file)


def _metadata(args, command: str) -> dict[str, str]:
    metadata = {**getattr(args, "identity", {"operator": "operator"}), "command": command}
    if args.batch:
        metadata["batch"] = args.batch
    if args.lot:
        metadata["lot"] = args.lot
    return metadata


def _trap_signals(interrupts: list[str], command: str, log) -> dict:
    """Ctrl-C / SIGTERM: the first asks for the shutdown sequence (``interrupts`` gets the
    reason), a second leaves at once.  Returns the previous handlers."""

    def on_signal(signum, _frame) -> None:
        if interrupts:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        interrupts.append(f"{name} received: shutting the line down")
        log(f"skid {command}: {name}: running the shutdown sequence (again to leave at once)")

    return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


def _dispatch(args, line_path, recipe_path, faults, options):
    """Run where the modules are: emulated over a broker, real on a broker, or in process."""
    from host import dryrun  # start-up cost (and it loads the emulator)
    from host.session import run_over_broker
    from line.loader import load_line

    broker = dict(speed=args.speed, line_id=args.line_id, epoch=args.epoch, resume=args.resume)
    if args.broker and not args.emulate:
        return run_over_broker(line_path, recipe_path, args.broker, **broker, **options)

    if args.broker:
        return dryrun.run_emulated_over_broker(
            line_path,
            recipe_path,
            args.broker,
            faults=faults,
            seed=args.seed,
            micropython_modules=micropython_modules(args, load_line(line_path).modules),
            **broker,
            **options,
        )
    return dryrun.run_in_process(line_path, recipe_path, faults=faults, seed=args.seed, **options)


def _finish(args, summary, command: str, log) -> int:
    """Say how the run ended, write the report, print the JSON; the exit code."""
    trips = ", ".join(f"{t['module']} {t['cause']} at {t['t_s']:.1f} s" for t in summary.trips)
    log(
        f"skid {command}: {summary.outcome}"
        + (f" ({summary.reason})" if summary.reason else "")
        + f"; trips: {trips or 'none'}; record: {summary.record}"
    )
    if getattr(args, "report", True):
        try:
            from host.report import write_report  # start-up cost

            path = write_report(summary.record, Path(summary.record).parent)
            log(f"skid {command}: report: {path}")
        except Exception as exc:  # noqa: BLE001 - the run itself is recorded; say why not
            log(f"skid {command}: could not write the report: {exc}")
    if args.json:
        print(json.dumps(summary.as_dict()))
    if summary.refused:  # the line did not match (modules, kinds, configs): nothing ran
        return EXIT_USAGE
    if summary.outcome == "completed":
        return EXIT_OK
    if summary.outcome == "completed_with_deviations":
        return EXIT_DEVIATIONS
    if summary.outcome == "aborted" and summary.all_safe_at_end is not False:
        return EXIT_ABORTED
    return EXIT_FAILURE
