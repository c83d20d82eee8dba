"""What ``skid campaign run|resume|report`` do, given where the modules are.

The command module (``host/commands/campaign.py``) parses the options and makes the site
(in process, or over a broker); this module loads and checks the campaign, creates or
reopens its record, runs one session, writes ``--emit-recipe`` and says how it ended.
Exit codes: 0 done, 2 invalid campaign (nothing started), 3 stopped by a trip or the
operator (``skid campaign resume ID`` continues)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from host.campaign.model import CampaignError, load_campaign
from host.campaign.record import CampaignRecord
from host.campaign.session import make_campaign_strategy, run_session
from host.session import RunRefused

EXIT_OK, EXIT_USAGE, EXIT_STOPPED = 0, 2, 3


def _same_line(campaign, line_path) -> str | None:
    if campaign.line_file is None:
        return None
    if Path(line_path).resolve() != campaign.line_file:
        return (
            f"{campaign.file}: campaign.line_file = {campaign.line_file} is not the line "
            f"given ({line_path})"
        )
    return None


def start(args, site_for, log) -> int:
    """``skid campaign run LINE CAMPAIGN``: a new campaign, its first session."""
    try:
        campaign = load_campaign(args.campaign)
    except CampaignError as exc:
        log(f"skid campaign: invalid campaign:\n{exc}")
        return EXIT_USAGE
    problem = _same_line(campaign, args.line)
    if problem:
        log(f"skid campaign: {problem}")
        return EXIT_USAGE
    try:
        from line.loader import LineError, load_line

        line_id = load_line(args.line).id
    except LineError as exc:
        log(f"skid campaign: {exc}")
        return EXIT_USAGE
    record = CampaignRecord.create(
        args.campaigns_dir,
        campaign,
        line_id,
        hashlib.sha256(Path(args.line).read_bytes()).hexdigest(),
        hashlib.sha256(Path(campaign.recipe_file).read_bytes()).hexdigest(),
        _wall_ms(),
    )
    record.add(_wall_ms(), "files", "line and campaign files", _files(args.line, campaign))
    log(f"skid campaign: campaign {record.campaign_id} ({record.path})")
    return _session(args, campaign, args.line, record, [], site_for, log)


def resume(args, site_for, log) -> int:
    """``skid campaign resume ID``: the next session of a stopped campaign, without
    repeating what is recorded as finished (ok, infeasible or failed)."""
    try:
        record = CampaignRecord.open(args.id, args.campaigns_dir)
    except (LookupError, ValueError, OSError) as exc:
        log(f"skid campaign: {exc}")
        return EXIT_USAGE
    files = record.notes("files")[0]
    try:
        campaign = load_campaign(files["campaign"])
    except CampaignError as exc:
        log(f"skid campaign: invalid campaign:\n{exc}")
        record.close()
        return EXIT_USAGE
    if campaign.hash != record.meta()["recipe_hash"]:
        log(f"skid campaign: {campaign.file} changed since the campaign started: refused")
        record.close()
        return EXIT_USAGE
    done = record.experiments()
    log(f"skid campaign: resuming {record.campaign_id}: {len(done)} experiments recorded")
    return _session(args, campaign, files["line"], record, done, site_for, log)


def _files(line_path, campaign) -> dict:
    return {"line": str(Path(line_path).resolve()), "campaign": str(campaign.file.resolve())}


def _wall_ms() -> int:
    import time

    return int(time.time() * 1000)


def _session(args, campaign, line_path, record, done, site_for, log) -> int:
    """One session; its outcome as an exit code (the faults are checked first)."""
    try:
        make_site = site_for(line_path)
    except ValueError as exc:  # a --fault that names nothing of the line (LineError too)
        log(f"skid campaign: {exc}")
        record.close()
        return EXIT_USAGE
    try:
        strategy = make_campaign_strategy(campaign, record.strategy_state())
        result = run_session(
            campaign,
            line_path,
            make_site,
            record,
            strategy=strategy,
            done=done,
            runs_dir=args.runs_dir,
            log=log,
            max_s=args.max_s,
            should_abort=getattr(args, "should_abort", None),
        )
    except RunRefused as exc:
        log("skid campaign: refused before anything moved:")
        for problem in exc.problems:
            log(f"  - {problem}")
        record.close()
        return EXIT_USAGE
    everything = record.experiments()
    best = best_condition(everything, campaign)
    record.close()
    log(f"skid campaign: {result.outcome}" + (f" ({result.reason})" if result.reason else ""))
    if best is not None:
        log(f"skid campaign: best so far: {_fmt(best)}")
    if args.emit_recipe and best is not None:
        from host.campaign.emit import emit_recipe

        path, problems = emit_recipe(campaign, best["condition"], args.emit_recipe)
        log(f"skid campaign: recipe with the best conditions: {path}")
        for problem in problems:
            log(f"skid campaign: warning: {path.name} would be refused: {problem}")
    if args.json:
        print(
            json.dumps(
                {
                    "campaign_id": record.campaign_id,
                    "record": str(record.path),
                    "outcome": result.outcome,
                    "reason": result.reason,
                    "best": best,
                    "experiments": everything,
                }
            )
        )
    log(f"skid campaign: report: skid campaign report {record.campaign_id}")
    if result.outcome == "done":
        return EXIT_OK
    return EXIT_USAGE if result.outcome == "no_feasible_condition" else EXIT_STOPPED


def _fmt(best: dict) -> str:
    cond = ", ".join(f"{k} {v:.4g}" for k, v in best["condition"].items())
    res = ", ".join(f"{k} {v:.4g}" for k, v in best["mean"].items())
    return f"{cond}: {res} (n = {best['n']})"


def best_condition(experiments: list[dict], campaign) -> dict | None:
    """The best condition measured: ok experiments grouped by condition (a design point
    and its replicates), ranked by the first objective's mean; with the mean, spread
    (min, max) and count of every result."""
    groups: dict[tuple, list[dict]] = {}
    for e in experiments:
        if e["status"] == "ok":
            key = tuple(sorted((k, round(v, 9)) for k, v in e["condition"].items()))
            groups.setdefault(key, []).append(e)
    if not groups:
        return None
    obj = campaign.objectives[0]
    sign = 1.0 if obj.direction == "max" else -1.0

    def mean(rows, name):
        return sum(r["results"][name] for r in rows) / len(rows)

    rows = max(groups.values(), key=lambda g: (sign * mean(g, obj.name), len(g)))
    names = list(rows[0]["results"])
    return {
        "condition": dict(rows[0]["condition"]),
        "n": len(rows),
        "mean": {n: mean(rows, n) for n in names},
        "min": {n: min(r["results"][n] for r in rows) for n in names},
        "max": {n: max(r["results"][n] for r in rows) for n in names},
        "experiments": [r["index"] for r in rows],
    }
