"""Coil temperature control on the emulated demo line (issue 14): the targets, measured.

Runs ``examples/recipes/demo.toml`` (80 degC) and ``examples/recipes/quick.toml`` (40 degC)
on ``examples/lines/demo.toml`` in process, seed 0, with the plant's temperature noise at
its default (``emulator.plant.TEMPERATURE_NOISE_C`` = 0.05 degC sd per probe sample), once
with the loop as it was before issue 14 ("before": kp 0.05, ki 0.002, kd 2.0, unfiltered
derivative, no setpoint weighting) and once with ``board_configs/reactor.toml`` as it is
("after").  Both runs include the flow step when the reagent flows are set again.

The measured coil temperature is ``reactor1``'s ``temperature`` channel (the loop's
measurement, as the board sees it) averaged over each whole second.  From it:

* ``overshoot_c``: the largest 1-s mean above the setpoint, from the setpoint change until
  the end of collection (target <= 1 degC);
* ``collect_band_c``: the largest |1-s mean - setpoint| during the collect phase (every
  sample within +-0.5 degC);
* ``settling_s``: from the setpoint change to the first 1-s mean after which every 1-s
  mean up to the end of collection stays within +-0.5 degC;
* ``duty_hf``: the heater duty's high-frequency content, defined as the RMS of the
  tick-to-tick (100 ms) change of the duty during the collect phase, in duty fraction.
  The first difference is a high-pass filter (gain ``2 sin(pi f / 10 Hz)``: 0.06 at
  0.1 Hz, 1 at 1.7 Hz, 2 at 5 Hz), so noise the derivative passes to the heater
  dominates it while the slow corrections a steady coil needs hardly count.  Target:
  at most a fifth of before.

``python -m bench.bench_control`` prints the records.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

from bench.common import record
from host.dryrun import run_in_process

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
REACTOR = ROOT / "board_configs" / "reactor.toml"
RECIPES = {
    "demo": ROOT / "examples" / "recipes" / "demo.toml",
    "quick": ROOT / "examples" / "recipes" / "quick.toml",
}
MODULE, LOOP = "reactor1", "coil_temp"
# The loop before issue 14 (reactor.toml's [pid.coil_temp] gains then; no filter, weight 1).
BEFORE = {"kp": 0.05, "ki": 0.002, "kd": 2.0, "d_filter_ms": None, "sp_weight": None}
BAND_C = 0.5


class Trace:
    """Per-tick samples of the reactor loop and the recipe phase, from ``on_tick``."""

    def __init__(self):
        self.t_s: list[float] = []
        self.temp: list[float | None] = []
        self.duty: list[float] = []
        self.target: list[float] = []
        self.phase: list[str] = []

    def __call__(self, coord, emu) -> None:
        node = emu.nodes.get(MODULE)
        if node is None:
            return
        loop = next(lp for lp in node.loops if lp.name == LOOP)
        seq = coord.sequencer
        self.t_s.append(emu.now_ms / 1000.0)
        self.temp.append(loop.measure.value)
        self.duty.append(float(loop.output.driver.value or 0.0))
        self.target.append(loop.pid.target)
        self.phase.append(seq.phase if seq is not None else "")


def one_second_means(trace: Trace) -> list[tuple[float, float, float, str]]:
    """``(t_s, mean temperature, setpoint, phase)`` per whole second with samples."""
    out = []
    bucket: list[float] = []
    second = None
    last = (0.0, "")
    for t, v, sp, ph in zip(trace.t_s, trace.temp, trace.target, trace.phase, strict=True):
        s = math.floor(t)
        if second is not None and s != second and bucket:
            out.append((float(second), sum(bucket) / len(bucket), last[0], last[1]))
            bucket = []
        second = s
        if v is not None:
            bucket.append(v)
        last = (sp, ph)
    if bucket and second is not None:
        out.append((float(second), sum(bucket) / len(bucket), last[0], last[1]))
    return out


def metrics(trace: Trace, setpoint: float) -> dict:
    """The issue's figures from one run's trace (see the module docstring)."""
    means = one_second_means(trace)
    start = next(i for i, m in enumerate(means) if m[2] == setpoint)
    collect = [i for i, m in enumerate(means) if m[3] == "collect"]
    end = collect[-1] + 1 if collect else len(means)
    window = means[start:end]
    overshoot = max(m[1] - setpoint for m in window)
    band = max(abs(means[i][1] - setpoint) for i in collect) if collect else math.inf
    settled_at = window[-1][0]
    for m in reversed(window):
        if abs(m[1] - setpoint) > BAND_C:
            break
        settled_at = m[0]
    duty = [d for d, ph in zip(trace.duty, trace.phase, strict=True) if ph == "collect"]
    diffs = [b - a for a, b in zip(duty, duty[1:], strict=False)]
    hf = math.sqrt(sum(d * d for d in diffs) / len(diffs)) if diffs else math.nan
    return {
        "overshoot_c": max(overshoot, 0.0),
        "collect_band_c": band,
        "settling_s": settled_at - means[start][0],
        "duty_hf": hf,
    }


def _with_gains(tmp: Path, gains: dict) -> Path:
    """A copy of the demo line whose reactor uses reactor.toml with ``gains`` in its loop."""
    text = REACTOR.read_text()
    head, sep, rest = text.partition(f"[pid.{LOOP}]")
    body, nxt, tail = rest.partition("\n[")
    lines = [
        ln
        for ln in body.splitlines()
        if not re.match(r"\s*(kp|ki|kd|d_filter_ms|sp_weight)\s*=", ln)
    ]
    lines += [f"{k} = {v!r}" for k, v in gains.items() if v is not None]
    board = tmp / "reactor.toml"
    board.write_text(head + sep + "\n".join(lines) + "\n" + nxt + tail)
    line_text = LINE.read_text().replace('"board_configs/reactor.toml"', f'"{board}"')
    line_text = re.sub(r'board = "board_configs/', f'board = "{ROOT}/board_configs/', line_text)
    line = tmp / "demo.toml"
    line.write_text(line_text)
    return line


def measure(recipe: str, line: Path, runs_dir: Path, seed: int = 0) -> dict:
    """Run ``recipe`` on ``line`` and return its metrics (and the outcome)."""
    trace = Trace()
    summary = run_in_process(line, RECIPES[recipe], seed=seed, runs_dir=runs_dir, on_tick=trace)
    setpoint = {"demo": 80.0, "quick": 40.0}[recipe]
    out = metrics(trace, setpoint)
    out["outcome"] = summary.outcome
    return out


def compare(seed: int = 0) -> dict:
    """``{recipe: {"before": metrics, "after": metrics}}``."""
    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        before_line = _with_gains(tmp, BEFORE)
        for name in RECIPES:
            out[name] = {
                "before": measure(name, before_line, tmp / "runs", seed),
                "after": measure(name, LINE, tmp / "runs", seed),
            }
    return out


def run() -> list[dict]:
    results = compare()
    recs = []
    for name, r in results.items():
        b, a = r["before"], r["after"]
        pre = f"control.{name}."
        recs.append(
            record(
                pre + "overshoot_c", a["overshoot_c"], "degC", "before", b["overshoot_c"], "<=1.0"
            )
        )
        recs.append(
            record(
                pre + "collect_band_c",
                a["collect_band_c"],
                "degC",
                "before",
                b["collect_band_c"],
                "<=0.5",
            )
        )
        recs.append(record(pre + "settling_s", a["settling_s"], "s", "before", b["settling_s"]))
        recs.append(
            record(pre + "duty_hf_rms", a["duty_hf"], "1", "before", b["duty_hf"], "<=0.2x")
        )
    return recs


if __name__ == "__main__":
    for r in run():
        print(r)
