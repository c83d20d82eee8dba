"""``skid campaign run|resume|report``: screen and optimise reaction conditions on a line,
closed loop, within the line's safety envelope.

``run LINE CAMPAIGN.toml`` starts a campaign (one coordinator run: the line is started
once, each experiment sets its conditions, waits for steady state, measures, and the line
is shut down at the end); ``resume ID`` continues a stopped one in a new run without
repeating finished experiments; ``report ID`` draws the responses, the Pareto front and
the best conditions with their replicate spread, and writes a CSV.  Where the modules
are: ``--emulate`` (in process), ``--emulate --broker URL``, ``--broker URL`` (real).

Exit codes: 0 done, 2 invalid campaign (nothing started), 3 stopped by a trip or the
operator.  Reference: docs/campaigns.md.
"""

from __future__ import annotations

import sys

from host.cli import EXIT_USAGE
from host.commands.run import DEFAULT_SPEED


def register(sub) -> None:
    p = sub.add_parser(
        "campaign",
        help="screen and optimise reaction conditions on a line (closed loop, within its envelope)",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
    )
    p.set_defaults(func=lambda _args: EXIT_USAGE)  # argparse asks for VERB before this
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    run = verbs.add_parser("run", help="start a campaign")
    run.add_argument("line", help="line file (examples/lines/*.toml)")
    run.add_argument("campaign", help="campaign file (examples/campaigns/*.toml)")
    _site_options(run)
    run.set_defaults(func=_run)
    res = verbs.add_parser("resume", help="continue a stopped campaign (a new run)")
    res.add_argument("id", help="campaign id, a unique prefix of one, or its record's path")
    _site_options(res)
    res.set_defaults(func=_resume)
    rep = verbs.add_parser("report", help="figures, best conditions and a CSV of a campaign")
    rep.add_argument("id", help="campaign id, a unique prefix of one, or its record's path")
    rep.add_argument("--campaigns-dir", default="campaigns", help="default ./campaigns")
    rep.add_argument("--out", help="output folder (default: beside the record)")
    rep.set_defaults(func=_report)


def _site_options(p) -> None:
    p.add_argument("--emulate", action="store_true", help="emulated modules and plant")
    p.add_argument("--broker", metavar="URL", help="MQTT broker, e.g. mqtt://localhost:1883")
    p.add_argument("--speed", type=float, default=DEFAULT_SPEED, help="with --emulate --broker")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="with --emulate: inject a fault, e.g. clog:reactor1@900 (run time s)",
    )
    p.add_argument("--seed", type=int, default=0, help="emulator random seed")
    p.add_argument("--runs-dir", default="runs", help="run records (default ./runs)")
    p.add_argument("--campaigns-dir", default="campaigns", help="campaign records")
    p.add_argument("--emit-recipe", metavar="PATH", help="write the best conditions as a recipe")
    p.add_argument("--max-s", type=float, default=30 * 24 * 3600.0, help="run time limit")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout at the end")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _problem(args) -> str | None:
    if args.fault and not args.emulate:
        return "--fault needs --emulate (faults are injected into the emulator)"
    if not args.emulate and not args.broker:
        return "say where the modules are: --emulate, --emulate --broker URL or --broker URL"
    return None


def _site_maker(args, line_path):
    """prep -> the site of the run (the emulator is loaded only here, as in skid run)."""
    from host.commands.run import _faults

    faults = _faults(line_path, args.fault)

    def make(prep):
        import time

        from host.dryrun import InProcessSite
        from host.launcher import EmulatedLineProcesses
        from host.session import BrokerSite

        if not args.broker:
            return InProcessSite(
                prep.line, _log, recipe_name=prep.recipe.name, faults=faults, seed=args.seed
            )
        procs = None
        if args.emulate:
            procs = EmulatedLineProcesses(
                line_path,
                args.broker,
                speed=args.speed,
                faults=list(faults),
                seed=args.seed,
                log=_log,
                epoch=time.time(),
            )
        return BrokerSite(
            prep.line, args.broker, _log, procs=procs, own_procs=procs is not None, speed=args.speed
        )

    return make


def _go(args, verb) -> int:
    """Check the options, then run ``verb(args, site_for, log)`` (host/campaign/cli.py)."""
    import signal

    from host.commands.run import _trap_signals

    problem = _problem(args)
    if problem:
        _log(f"skid campaign: {problem}")
        return EXIT_USAGE
    # Ctrl-C / SIGTERM: the running experiment fails, the shutdown sequence runs, exit 3
    # (a second one leaves at once, as skid run does).
    interrupts: list[str] = []
    args.should_abort = lambda: interrupts[0] if interrupts else None
    old = _trap_signals(interrupts, "campaign", _log)
    try:
        return verb(args, lambda line_path: _site_maker(args, line_path), _log)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _run(args) -> int:
    from host.campaign import cli

    return _go(args, cli.start)


def _resume(args) -> int:
    from host.campaign import cli

    return _go(args, cli.resume)


def _report(args) -> int:
    from host.campaign.report import write_campaign_report

    try:
        paths = write_campaign_report(args.id, args.campaigns_dir, args.out)
    except (LookupError, ValueError, OSError) as exc:
        _log(f"skid campaign report: {exc}")
        return EXIT_USAGE
    for path in paths:
        print(path)
    return 0
