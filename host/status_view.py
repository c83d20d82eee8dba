"""How ``skid status`` shows a ``LiveLine`` snapshot (``host/livestate.py``) to a person: a
rich table under a few lines about the run (``render``), or one line of text per change
when its output is piped (``one_line``, ``change_key``).  Colour only for what is abnormal
(trips, alarms, silence, gaps), as a control-room display does."""

from __future__ import annotations

import time


def fmt_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fmt_duration(seconds) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _clock(t_ms) -> str:
    return "--:--:--" if t_ms is None else time.strftime("%H:%M:%S", time.localtime(t_ms / 1000))


def coordinator_text(snap: dict) -> str:
    c = snap["coordinator"]
    if c["last_seen_ms"] is None and snap["run"] is None:
        return "coordinator: not heard (no run on this line, or it has not started)"
    if c["online"]:
        return "coordinator: online"
    run = snap["run"]
    if run is not None and not run["online"]:
        return "coordinator: gone, its run is over"
    return "coordinator: OFFLINE or silent"


def run_lines(snap: dict) -> list[str]:
    """What the run is doing, a few short lines (empty without a run status)."""
    run = snap["run"]
    if run is None:
        return []
    head = f"run {run['run_id']}: recipe {run['recipe'] or '-'}, {run['state']}"
    if run.get("stale"):
        head += " (run status stale: the coordinator is away)"
    lines = [head + f", {fmt_duration(run['elapsed_s'])} elapsed"]
    phases = run["phases"]
    if run["phase"] is not None:
        where = f"phase {run['phase']}"
        if run["phase_index"] is not None:
            where += f" ({run['phase_index'] + 1}/{len(phases)})"
        where += f" for {fmt_duration(run['phase_elapsed_s'])}"
        if run["next_phase_in_s"] is not None:
            where += f", next phase in ~{fmt_duration(run['next_phase_in_s'])}"
        if run["step"]:
            where += f"; step: {run['step']}"
        lines.append(where)
        if run["phase_index"] is not None and phases[run["phase_index"]]["conditions"]:
            lines.append("  until: " + "; ".join(phases[run["phase_index"]]["conditions"]))
    volumes = [
        f"collected {fmt_value(run['collected_ml'])} mL",
        f"diverted {fmt_value(run['diverted_ml'])} mL",
        f"outlet {run['outlet'] or '-'}",
    ]
    lines.append(", ".join(volumes))
    if run["reason"]:
        lines.append(f"reason: {run['reason']}")
    return lines


def value_texts(module: dict, skip=("status",)) -> list[str]:
    """``name value unit (sp X)`` for each channel but those of a role in ``skip``, with
    its quality when not good and ``stale`` when old."""
    out = []
    for name, v in module["values"].items():
        if v["role"] in skip:
            continue
        text = f"{name} {fmt_value(v['value'])} {v['unit']}".rstrip()
        if v["setpoint"] is not None and v["role"] != "setpoint":
            text += f" (sp {fmt_value(v['setpoint'])})"
        if v["quality"] not in (None, "good"):
            text += f" {v['quality']}"
        if v["value"] is not None and v["stale"]:
            text += " stale"
        out.append(text)
    return out


def link_text(m: dict) -> str:
    if m["last_seen_ms"] is None:
        return "online (coordinator's word)" if m["online"] else "not heard"
    # Without a birth, values are decoded with the run status's channel catalogue; with
    # neither, the module is heard but its values are not known yet.
    decodable = m["born"] or bool(m["values"])
    if m["stale"]:
        return "silent" if decodable else "silent, no birth yet"
    return "online" if decodable else "online, no birth yet"


def gap_texts(snap: dict, limit: int = 3) -> list[str]:
    out = []
    for g in snap["gaps"][-limit:]:
        end = "now (open)" if g["to_ms"] is None else _clock(g["to_ms"])
        out.append(f"gap {g['what']}: {_clock(g['from_ms'])} to {end}")
    return out


def render(snap: dict):
    """A rich renderable: the coordinator and run lines, the module table, open alarms
    and the last gaps."""
    from rich.console import Group  # lazy: start-up
    from rich.table import Table
    from rich.text import Text

    head = [Text(f"line {snap['line']} · {coordinator_text(snap)}")]
    head += [Text(line) for line in run_lines(snap)]
    if not snap["link"]["connected"]:
        head.append(Text("broker link DOWN", style="bold red"))
    table = Table(expand=False)
    for col in ("module", "kind", "link", "state", "values", "alarms", "trips (first-out)"):
        table.add_column(col)
    for m in snap["modules"]:
        link = link_text(m)
        trips = ", ".join(
            t["cause"] + (" (first-out)" if t["first_out"] else "") for t in m["trips"]
        )
        table.add_row(
            m["id"],
            m["kind"] or "?",
            Text(link, style="red" if "silent" in link or link == "not heard" else ""),
            m["state"] or "?",
            "\n".join(value_texts(m)) or "-",
            Text(", ".join(m["alarms"]) or "-", style="yellow" if m["alarms"] else ""),
            Text(trips or "-", style="bold red" if trips else ""),
        )
    tail = [Text(g, style="red" if g.endswith("(open)") else "") for g in gap_texts(snap)]
    return Group(*head, table, *tail)


def change_key(snap: dict) -> tuple:
    """What a piped ``--watch`` prints a line for when it changes: run state, phase, step,
    outlet, the coordinator and the link, each module's state, presence, alarms and trips,
    the active alarms and the gaps (not the values: they change all the time)."""
    run = snap["run"] or {}
    modules = tuple(
        (m["id"], m["state"], m["online"], m["stale"], tuple(m["alarms"]), len(m["trips"]))
        for m in snap["modules"]
    )
    alarms = tuple((a["id"], a["active"], a["acked"]) for a in snap["alarms"] if a["active"])
    gaps = tuple((g["what"], g["from_ms"], g["to_ms"]) for g in snap["gaps"])
    return (
        run.get("run_id"),
        run.get("state"),
        run.get("phase"),
        run.get("step"),
        run.get("outlet"),
        snap["coordinator"]["online"],
        snap["link"]["connected"],
        modules,
        alarms,
        gaps,
    )


def one_line(snap: dict) -> str:
    """The snapshot on one line of text (``--watch`` piped)."""
    parts = [_clock(snap["t_ms"])]
    run = snap["run"]
    if run is None:
        parts.append("no run status")
    else:
        text = f"{run['state']} {run['phase'] or '-'} {fmt_duration(run['phase_elapsed_s'])}"
        if run["collected_ml"] is not None:
            text += f" collected {fmt_value(run['collected_ml'])} mL"
        parts.append(text)
    if not snap["coordinator"]["online"]:
        parts.append("coordinator OFFLINE")
    if not snap["link"]["connected"]:
        parts.append("broker link DOWN")
    for m in snap["modules"]:
        flag = "" if m["online"] else " OFFLINE"
        values = value_texts(m, skip=("status", "setpoint"))  # a loop's sp shows as (sp X)
        text = f"{m['id']} {m['state'] or '?'}{flag}"
        if values:
            text += ": " + ", ".join(values)
        if m["trips"]:
            text += " TRIP " + ",".join(t["cause"] for t in m["trips"])
        if m["alarms"]:
            text += " ALARM " + ",".join(m["alarms"])
        parts.append(text)
    open_gaps = [g["what"] for g in snap["gaps"] if g["to_ms"] is None]
    if open_gaps:
        parts.append("GAP " + ",".join(open_gaps))
    return " | ".join(parts)
