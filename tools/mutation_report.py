"""Mutation testing of the safety code: the whole of ``make mutate`` in one command.

    python -m tools.mutation_report            # run mutmut, then report (what make mutate does)
    python -m tools.mutation_report report     # report again from the results in mutants/

``run`` starts from a clean ``mutants/`` (mutmut 3 reuses a stale copy of the sources, which
would test yesterday's code), runs ``mutmut run`` on the functions in ``TARGETS`` against the
pinned test subset in pyproject.toml ``[tool.mutmut]``, then reports.

``report`` reads mutmut's per-file results (``mutants/**/*.py.meta``) and writes

* ``bench/mutation.json``: per file killed / survived / timeout / equivalent / not covered /
  score, the date, mutmut's version and the wall time of the run;
* ``docs/mutation-survivors.md``: every surviving mutant with its diff line, marked
  equivalent (with the reason, from ``EQUIVALENT`` below) or open;

and prints the scores and the open survivors.  Exit status 1 when any file scores below
``TARGET_SCORE`` (the files are still written).

Score = (killed + timeout) / (all scored mutants - equivalent).  A mutant no test of the
subset reaches ("no tests" in mutmut) counts as survived: nothing would notice it.

mutmut 3 mutates whole files; the functions that count are chosen here, by name, in two
steps: ``TARGETS`` (glob patterns over mutmut's function keys, ``x_func`` for a function and
``xǁClassǁmethod`` for a method) are passed to ``mutmut run`` so only those mutants are run
at all, and the same patterns (minus ``NOT_SCORED``) filter the results.  No pragma comments
are added to the sources.
"""

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
RESULTS_JSON = ROOT / "bench" / "mutation.json"
SURVIVORS_MD = ROOT / "docs" / "mutation-survivors.md"
RUN_LOG = MUTANTS / "mutmut-run.log"

TARGET_SCORE = 0.90

# file -> mutmut function keys (globs) whose mutants are run and scored.
TARGETS = {
    "edge/interlocks.py": ["*"],
    "edge/lease.py": ["*"],
    "edge/runaway.py": ["*"],
    # Plausibility only: NaN/range/NE43/open/short checks, uncertain_ms, stuck detection,
    # quality, staleness, 1oo2 voting (degraded, redundancy lost), the unfiltered view (not
    # the calibration arithmetic nor the constructors' argument checks).
    "edge/signals.py": [
        "x_is_finite_number",
        "xǁ*ǁraw_ok",
        "xǁ*ǁbad_reason",
        "xǁ*ǁraw_uncertain",
        "xǁSensorChannelǁstarting",
        "xǁSensorChannelǁ_set_bad",
        "xǁSensorChannelǁ_uncertain_expired",
        "xǁSensorChannelǁ_track_stuck",
        "xǁSensorChannelǁupdate",
        "xǁSensorChannelǁcheck",
        "xǁUnfilteredǁ*",
    ],
    # Split from edge/signals.py (so that only boards using them load them): the PT100
    # and table plausibility checks and the 1oo2 vote, scored as they were there.
    "edge/rtd.py": ["xǁ*ǁraw_ok", "xǁ*ǁbad_reason", "xǁ*ǁraw_uncertain"],
    "edge/table.py": ["xǁ*ǁraw_ok", "xǁ*ǁbad_reason", "xǁ*ǁraw_uncertain"],
    "edge/voter.py": [
        "xǁRedundant1oo2ǁ_pick",
        "xǁRedundant1oo2ǁ_bad",
        "xǁRedundant1oo2ǁcheck",
    ],
    # Command and lease checking (authenticated leases, the abort and unsigned-rebirth
    # expiry exemptions, the unsigned rebirth limit), trip reset and parking (the tick
    # pins parked outputs until start/unhold), and the independent dead-man check.
    "edge/node.py": [
        "xǁNodeǁhandle_command",
        "xǁNodeǁhandle_lease",
        "xǁNodeǁ_refuse_lease",
        "xǁNodeǁ_apply",
        "xǁNodeǁ_reset_trips",
        "xǁNodeǁ_set_setpoint",
        "xǁNodeǁ_configure",
        "xǁNodeǁdeadman_check",
        "xǁNodeǁtick",
        # the steps of the tick (one method each since the tick was split)
        "xǁNodeǁ_read_sensors",
        "xǁNodeǁ_check_watchdogs",
        "xǁNodeǁ_verify_heaters",
        "xǁNodeǁ_on_trips",
        "xǁNodeǁ_raise_alarms",
        "xǁNodeǁ_switch_loops",
        "xǁNodeǁ_write_outputs",
        "xǁNodeǁtrip_cause",
        "x__is_abort",
    ],
    "protocol/auth.py": ["*"],
}

# Run (cheap: no test reaches them) but not scored: diagnostics text, not behaviour.
NOT_SCORED = ["*__repr__", "x__repr"]

# Surviving mutants that cannot change behaviour: (file, function key, regex over the
# mutated line(s), reason[, regex over the whole unified diff, to tell apart two identical
# mutated lines by their context]).  Keyed by the mutated text, not mutmut's numbers,
# which shift whenever a function is edited.
_FALSY = "None is falsy like False, and every reader tests truthiness"
EQUIVALENT = [
    # edge/lease.py: flags read only as booleans (node.py, the INPUT_TRUE interlock).
    (
        "edge/lease.py",
        "xǁLeaseWatchdogǁ*",
        r"^self\.(value|armed|lost|active_at_loss|_restored) = None$",
        _FALSY,
    ),
    (
        "edge/lease.py",
        "xǁLeaseWatchdogǁ__init__",
        r'^self\.bad_reason = ""$',
        "bad_reason is read only for BAD quality, which the lease never has",
    ),
    (
        "edge/lease.py",
        "xǁLeaseWatchdogǁ__init__",
        r"^self\.(active_at_loss = True|_last_ms = (None|1)|_lost_ms = (None|1)|_limit_ms = None)( +#.*)?$",
        "initial values never read: check() returns before its first feed (_last_ms and"
        " _limit_ms, which feed() sets), and _lost_ms/active_at_loss are set at the loss"
        " before they are read",
    ),
    (
        "edge/lease.py",
        "xǁLeaseWatchdogǁfeed",
        r"^if duration_ms is not None and duration_ms <= limit:$",
        "on equality both branches store the same limit",
    ),
    # edge/signals.py
    (
        "edge/rtd.py",
        "xǁ*ǁbad_reason",
        r"raw <= self\.(r_short|raw_min)",
        "bad_reason is asked only for raw outside [min, max], so raw == min never reaches it",
    ),
    (
        "edge/table.py",
        "xǁ*ǁbad_reason",
        r"raw <= self\.(r_short|raw_min)",
        "bad_reason is asked only for raw outside [min, max], so raw == min never reaches it",
    ),
    ("edge/signals.py", "xǁSensorChannelǁ_set_bad", r"^self\._primed = None$", _FALSY),
    (
        "edge/voter.py",
        "xǁRedundant1oo2ǁ*",
        r"^(self\.value = |return )va if va (>|<) vb else vb$",
        "differs only when va == vb, where both branches give the same value",
    ),
    # edge/interlocks.py
    (
        "edge/interlocks.py",
        "xǁConditionǁ_sample_rate",
        r"^if self\._rn <= _RATE_SLOTS:$",
        "a 9th count only makes the newest-to-oldest search revisit the newest sample after"
        " the oldest; it cannot be older, so the rate found is the same",
    ),
    ("edge/interlocks.py", "*", r"_cause_now\(None\)$", _FALSY),
    ("edge/interlocks.py", "xǁInterlockǁ__init__", r"^self\.tripped = None$", _FALSY),
    (
        "edge/interlocks.py",
        "xǁConditionǁ__init__",
        r"^self\._limit = (1\.0 if limit is None|0\.0 if \(limit is None\) and False)",
        "_limit is read only by above/below/rate_of_rise, which require a limit",
    ),
    (
        "edge/interlocks.py",
        "xǁConditionǁ__init__",
        r"^self\.(_rt = \[1\]|_rv = \[1\.0\]|_rhead = 1$)",
        "ring slots are read only after being written (_rn counts them), and the ring works"
        " from any start slot",
    ),
    (
        "edge/interlocks.py",
        "xǁConditionǁcause_now",
        r"persist=True\):$",
        "the only caller (edge/alarms.py) always passes persist explicitly",
    ),
    (
        "edge/interlocks.py",
        "xǁInterlockSetǁ*",
        r"^(il\.tripped = None|changed = None)$",
        _FALSY,
    ),
    (
        "edge/interlocks.py",
        "xǁInterlockSetǁ_rebuild",
        r"^if r >= rank:$",
        "equal rank means the same requested state: held/stopped/aborted rank 1/2/3, and"
        " rank 0 (no or unknown state) is what the runtime treats as abort either way",
    ),
    # edge/runaway.py
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁ*",
        r"^self\.(_approaching|_starting|_full_throughout) = None$",
        _FALSY,
    ),
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁ*",
        r"^self\._starting = True$",
        "set together with _approaching = False (reset, near target): _starting is read only"
        " while approaching, and every new approach sets it first",
        r"^ +self\._approaching = False\n-",
    ),
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁupdate",
        r"^self\._arm_gain_window\(temperature, None, now_ms\)$",
        "_arm_gain_window does not use heater_output",
    ),
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁupdate",
        r"temperature <= self\._off_min:$|^if g <= self\._goal_temp:$",
        "on equality both branches store the same value",
    ),
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁreset",
        r'^self\._last_target = ""$',
        'only compared with a numeric target, which differs from "" as it does from None',
    ),
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁreset",
        r"^self\.(_goal_temp = (None|1\.0)|_goal_ms = (None|1)|_full_throughout = True)$",
        "read only while approaching, and every approach sets them first (_arm_gain_window)",
    ),
    (
        "edge/signals.py",
        "xǁSensorChannelǁupdate",
        r"^if dt (<= 0|< 1):$",
        "dt is an integer tick difference: for 0 both branches give 0",
    ),
    (
        "edge/signals.py",
        "xǁSensorChannelǁupdate",
        r"^if \(x > self\.value and y > x\)|y >= x\) or|y <= x\):$|x <= self\.value and y < x\):$",
        "on equality the clamp stores the value it already has",
    ),
    (
        "edge/signals.py",
        "xǁSensorChannelǁupdate",
        r"^(if \(x >= self\.value and y > x\) and \(x < self\.value and y < x\):|y = None)$",
        "the overshoot clamp guards single-precision rounding on boards; no double-precision"
        " input reaches it (none in 9 million random and ulp-adjacent cases), so CPython tests"
        " cannot",
    ),
    (
        "edge/voter.py",
        "xǁRedundant1oo2ǁcheck",
        r"^if not a_ok and not b_ok and (\(a\.quality (!=|==) QUALITY_BAD (and|or) b\.quality"
        r"|not \(a_bad or b_bad\):$)",
        "where the start-up branch is skipped instead, the final branch gives the same: BAD"
        " with the reason of the BAD input (a starting input has none); both BAD gives a's"
        " reason either way",
    ),
    (
        "edge/signals.py",
        "xǁSensorChannelǁupdate",
        r"^self\._start_ms = None$",
        "while starting, update() calls check(now_ms) at once, which records the same tick",
    ),
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁupdate",
        r"^dt_s = dt / 1000\.0 if dt >= 0 else 0\.0$",
        "for dt == 0 both branches give 0.0",
    ),
    (
        "edge/node.py",
        "xǁNodeǁ_apply",
        r'"(XXoperation not supportedXX|OPERATION NOT SUPPORTED)"$',
        "unreachable: parse_command admits only the six operations handled above",
    ),
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁreset_refusal",
        r"^clear = peak - self\.hysteresis if \(peak is not None\) or True else None$",
        "an uncontrolled_heating trip always stores a finite peak (the reading that tripped),"
        " and only a larger finite reading replaces it",
    ),
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁ_track_after_fault",
        r"^if self\._peak is None or temperature >= self\._peak:$",
        "on equality both branches store the same value",
    ),
    (
        "edge/runaway.py",
        "x__fmt",
        r'"\{:\.1F\}"',
        "'F' differs from 'f' only for inf and NaN, and _fmt gets only finite readings"
        " (a non-finite one is stored as None, shown as '?')",
    ),
    ("edge/signals.py", "xǁSensorChannelǁ*", r"^self\.stuck = None$", _FALSY),
    (
        "edge/runaway.py",
        "xǁHeaterVerifierǁupdate",
        r"^return self\._trip\(FAULT_(RUNAWAY|NOT_HEATING), None, now_ms\)$",
        "the temperature at the trip seeds only the peak and latest reading, which only the"
        " uncontrolled_heating reset rule reads",
    ),
    # edge/node.py
    (
        "edge/node.py",
        "xǁNodeǁhandle_command",
        r'_AUTH_REASONS\.get\(result, (None|"XXrejectedXX"|"REJECTED"|)\)',
        "the default is unreachable: verify() of a parsed command returns only OK,"
        " UNAUTHENTICATED or REPLAYED, both in _AUTH_REASONS",
    ),
    (
        "edge/node.py",
        "xǁNodeǁ_configure",
        r"^return RESULT_OUT_OF_RANGE, str\(None\)$",
        "unreachable guard: PID.set_tunings reports bad gains by its result and raises nothing"
        " (pid._finite catches TypeError)",
    ),
    (
        "edge/node.py",
        "xǁNodeǁ_apply",
        r'^if name (==|!=) "(start|XXstartXX|START)" or name == "unhold":$',
        "parked outputs exist only in holding/held (a held-type trip reset there): start is"
        " accepted only at rest, where the tick has already dropped them, and the other"
        " commands accepted in holding/held (stop, abort) leave the running states, where"
        " the next tick drops them before it writes an output",
    ),
    # protocol/auth.py
    (
        "protocol/auth.py",
        "xǁHostTimeEstimateǁ__init__",
        r"^self\._local_ms = (None|1)$",
        "_local_ms is read only after update() has set it (host_now returns None before)",
    ),
    (
        "protocol/auth.py",
        "xǁHostTimeEstimateǁhost_now",
        r"- _TICKS_HALF\) & _TICKS_MAX\) - _TICKS_HALF",
        "+2^29 and -2^29 are the same modulo 2^30, which the mask takes",
    ),
    (
        "protocol/auth.py",
        "xǁHostTimeEstimateǁhost_now",
        r"^return host if host >= self\._floor_ms else self\._floor_ms$",
        "on equality both branches give the same value",
    ),
]

_STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    None: "not checked",
}


def _module(path):
    return path[:-3].replace("/", ".")


def _function_key(path, mutant):
    """'edge.node.xǁNodeǁ_apply__mutmut_7' -> 'xǁNodeǁ_apply'."""
    return re.sub(r"__mutmut_\d+$", "", mutant[len(_module(path)) + 1 :])


def _scored(path, func):
    return any(fnmatch.fnmatchcase(func, p) for p in TARGETS[path]) and not any(
        fnmatch.fnmatchcase(func, p) for p in NOT_SCORED
    )


def mutant_globs():
    return [f"{_module(path)}.{pat}__mutmut_*" for path, pats in TARGETS.items() for pat in pats]


def run(jobs):
    """Fresh mutants/, one ``mutmut run``; returns (exit code, wall seconds)."""
    shutil.rmtree(MUTANTS, ignore_errors=True)
    MUTANTS.mkdir()
    mutmut = Path(sys.executable).parent / "mutmut"
    cmd = [str(mutmut), "run", "--max-children", str(jobs)] + mutant_globs()
    print(f"mutmut run on {len(TARGETS)} files, {jobs} jobs; progress in {RUN_LOG}")
    t0 = time.monotonic()
    with open(RUN_LOG, "w") as log:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    if rc != 0:
        tail = RUN_LOG.read_text(errors="replace").replace("\r", "\n").splitlines()[-30:]
        print("\n".join(tail))
        print(f"mutmut run failed (exit {rc}); see {RUN_LOG}")
    (MUTANTS / "wall_s").write_text(f"{wall:.0f}\n")
    return rc, wall


def _diff(mutant, path):
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return get_diff_for_mutant(mutant, path=path)


def _changed_lines(diff):
    return [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]


def _equivalent(path, func, changed, diff):
    text = "\n".join(changed)
    for entry in EQUIVALENT:
        e_path, e_func, pattern, reason = entry[:4]
        context = entry[4] if len(entry) > 4 else None
        if (
            e_path == path
            and fnmatch.fnmatchcase(func, e_func)
            and re.search(pattern, text, re.M)
            and (context is None or re.search(context, diff, re.M))
        ):
            return reason
    return None


def collect():
    """Per file: counts and the survivors (with diff and equivalence verdict)."""
    files = {}
    for path in TARGETS:
        meta = MUTANTS / (path + ".meta")
        if not meta.exists():
            raise SystemExit(f"no results for {path} ({meta} missing): run make mutate")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = {"killed": 0, "timeout": 0, "survived": 0, "no_tests": 0, "equivalent": 0}
        counts["not_checked"] = 0
        survivors = []
        for mutant, code in sorted(codes.items(), key=lambda kv: _sort_key(kv[0])):
            func = _function_key(path, mutant)
            if not _scored(path, func):
                continue
            status = _STATUS.get(code, "suspicious")
            if status in ("killed", "timeout"):
                counts[status] += 1
                continue
            if status == "not checked":
                counts["not_checked"] += 1
                continue
            diff = _diff(mutant, path)
            changed = _changed_lines(diff)
            reason = _equivalent(path, func, changed, diff)
            if reason is not None:
                counts["equivalent"] += 1
            elif status == "no tests":
                counts["no_tests"] += 1
            else:
                counts["survived"] += 1
            survivors.append(
                {
                    "mutant": mutant,
                    "function": func,
                    "status": status,
                    "changed": changed,
                    "equivalent": reason,
                }
            )
        total = sum(counts.values())
        relevant = total - counts["equivalent"]
        killed = counts["killed"] + counts["timeout"]
        counts["total"] = total
        counts["score"] = round(killed / relevant, 4) if relevant else None
        files[path] = (counts, survivors)
    return files


def _sort_key(mutant):
    m = re.match(r"(.*)__mutmut_(\d+)$", mutant)
    return (m.group(1), int(m.group(2))) if m else (mutant, 0)


def _pytest_selection():
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return cfg.get("pytest_add_cli_args_test_selection", []), cfg.get("pytest_add_cli_args", [])


def write(files, wall):
    tests, extra = _pytest_selection()
    doc = {
        "tool": "mutmut",
        "tool_version": version("mutmut"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "wall_time_s": None if wall is None else round(wall),
        "target_score": TARGET_SCORE,
        "score_formula": "(killed + timeout) / (total - equivalent); no_tests counts as survived",
        "tests": tests,
        "pytest_args": extra,
        "files": {},
    }
    for path, (counts, _) in files.items():
        doc["files"][path] = dict(counts, functions=TARGETS[path])
    RESULTS_JSON.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")

    out = [
        "# Surviving mutants",
        "",
        "Written by `make mutate` (tools/mutation_report.py) on {}, mutmut {}: do not edit by"
        " hand; mark a survivor equivalent in `EQUIVALENT` in tools/mutation_report.py (with"
        " the reason), or kill it with a test.  Scores: bench/mutation.json; how to run:"
        " docs/development.md, *Mutation testing*.".format(doc["date"], doc["tool_version"]),
        "",
    ]
    for path, (counts, survivors) in files.items():
        out.append(
            "## {} — score {} ({} killed, {} timeout, {} survived, {} not covered, {} equivalent)".format(
                path,
                "n/a" if counts["score"] is None else "{:.1%}".format(counts["score"]),
                counts["killed"],
                counts["timeout"],
                counts["survived"],
                counts["no_tests"],
                counts["equivalent"],
            )
        )
        out.append("")
        if not survivors:
            out.append("No survivors.")
            out.append("")
            continue
        for s in survivors:
            verdict = (
                "equivalent: " + s["equivalent"]
                if s["equivalent"]
                else ("open (no test reaches it)" if s["status"] == "no tests" else "open")
            )
            change = " / ".join(s["changed"]) or "(line removed)"
            out.append("- `{}` — **{}**  ".format(s["mutant"].split(".")[-1], verdict))
            out.append("  `{}`".format(change.replace("`", "'")))
        out.append("")
    SURVIVORS_MD.write_text("\n".join(out))


def summary(files):
    below = []
    print()
    print(
        "{:22} {:>6} {:>7} {:>8} {:>8} {:>10} {:>6} {:>7}".format(
            "file", "total", "killed", "timeout", "survived", "not cover", "equiv", "score"
        )
    )
    for path, (c, _) in files.items():
        score = c["score"]
        print(
            "{:22} {:>6} {:>7} {:>8} {:>8} {:>10} {:>6} {:>7}".format(
                path,
                c["total"],
                c["killed"],
                c["timeout"],
                c["survived"],
                c["no_tests"],
                c["equivalent"],
                "n/a" if score is None else f"{score:.1%}",
            )
        )
        if score is not None and score < TARGET_SCORE:
            below.append(path)
    open_ = [(p, s) for p, (_, ss) in files.items() for s in ss if not s["equivalent"]]
    if open_:
        print(f"\nopen survivors ({len(open_)}):")
        for _, s in open_:
            print("  {}  {}".format(s["mutant"], " / ".join(s["changed"])[:110]))
    print(f"\nwrote {RESULTS_JSON.relative_to(ROOT)} and {SURVIVORS_MD.relative_to(ROOT)}")
    if below:
        print("below the {:.0%} target: {}".format(TARGET_SCORE, ", ".join(below)))
    return 1 if below else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", nargs="?", choices=("run", "report"), default="run")
    ap.add_argument("--jobs", type=int, default=2, help="parallel mutants (default 2)")
    args = ap.parse_args(argv)
    import os

    os.chdir(ROOT)  # mutmut reads pyproject.toml and mutants/ from the working directory
    wall = None
    if args.action == "run":
        rc, wall = run(args.jobs)
        if rc != 0:
            return rc
    elif (MUTANTS / "wall_s").exists():
        wall = float((MUTANTS / "wall_s").read_text())
    files = collect()
    write(files, wall)
    return summary(files)


if __name__ == "__main__":
    sys.exit(main())
