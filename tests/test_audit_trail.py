"""The audit trail of a run (host/coordinator.py → host/record.py ``change`` entries):
every setpoint, mode and interlock change with its old value, new value, who and why, and
whether the operator logged in (``--user``) and signed the request (operator key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from host import control
from host.dryrun import run_in_process
from host.record import RunRecord, verify

ROOT = Path(__file__).resolve().parent.parent
LINE = ROOT / "examples" / "lines" / "demo.toml"
RECIPE = ROOT / "examples" / "recipes" / "demo.toml"
KEY = b"k" * 32


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory):
    """The demo with an operator in manual (in-process requests, one logged in) and a
    hold/resume over the control topic (one request signed, one not)."""
    sent: list[str] = []

    def script(coord, emu):
        t = emu.now_ms
        if not sent:
            coord._test_operator = coord.transport.bus.client("operator")
            sent.append("connected")
        op = coord._test_operator
        if t == 420_000:
            coord.request("manual", "bob", "tune the coil", role="operator", authenticated=True)
            coord.request(
                "set",
                "bob",
                "try 75",
                role="operator",
                authenticated=True,
                module="reactor1",
                channel="coil_temp",
                value=75.0,
            )
        if t == 430_000:
            coord.request(
                "set", "eve", "no login", module="reactor1", channel="coil_temp", value=76.0
            )
        if t == 440_000:
            coord.request("auto", "bob", "done tuning", role="operator", authenticated=True)
        if t == 450_000:
            coord.request("ack", "bob", "seen it", module="uv1", alarm="sensor_bad")
        if t == 460_000:
            body = {"role": "operator", "auth": control.AUTH_PASSWORD}
            op.publish(
                control.control_topic("demo"),
                control.build_request("h1", "hold", "carol", "sample", key=KEY, **body),
            )
        if t == 470_000:
            op.publish(
                control.control_topic("demo"),
                control.build_request("h2", "resume", "carol", "sampled", key=KEY),
            )
        op.poll()

    runs = tmp_path_factory.mktemp("runs")
    summary = run_in_process(LINE, RECIPE, runs_dir=runs, on_tick=script, operator_key=KEY)
    rec = RunRecord.open(summary.record, readonly=True)
    try:
        return summary, rec.changes(), rec.operator_actions()
    finally:
        rec.close()


def _setpoints(changes, module, channel):
    return [
        c
        for c in changes
        if c["what"] == "setpoint" and c["module"] == module and c["channel"] == channel
    ]


def test_the_run_completes_and_its_record_verifies(audited_run):
    summary, _changes, _ = audited_run
    # Manual setpoints and a hold during collection divert product: a deviation.
    assert summary.outcome in ("completed", "completed_with_deviations")
    assert verify(summary.record).ok


def test_a_manual_setpoint_change_carries_old_new_who_why_and_login(audited_run):
    _summary, changes, _ = audited_run
    coil = _setpoints(changes, "reactor1", "coil_temp")
    recipe_value = coil[0]["new"]  # the recipe's own setpoint, first
    assert coil[0]["who"] == "recipe demo-amide" and "authenticated" not in coil[0]
    manual = [c for c in coil if c["who"] in ("bob", "eve")]
    assert [(c["who"], c["old"], c["new"], c["why"]) for c in manual] == [
        ("bob", recipe_value, 75.0, "try 75"),
        ("eve", 75.0, 76.0, "no login"),
        # Leaving manual puts the recipe's value back: bob's change, with his why.
        ("bob", 76.0, recipe_value, "done tuning"),
    ]
    assert manual[0]["authenticated"] is True and manual[0]["role"] == "operator"
    assert manual[1]["authenticated"] is False and "role" not in manual[1]
    assert recipe_value == 80.0  # examples/recipes/demo.toml: temperature_c


def test_recipe_setpoints_name_the_recipe_and_its_phase_and_step(audited_run):
    _summary, changes, _ = audited_run
    flows = _setpoints(changes, "pump_a", "flow")
    assert flows and all(c["who"] == "recipe demo-amide" for c in flows)
    assert flows[0]["why"].startswith("prime / ")
    # Each change's old value is the one before it.
    assert [c["old"] for c in flows[1:]] == [c["new"] for c in flows[:-1]]


def test_mode_and_interlock_changes_are_recorded(audited_run):
    _summary, changes, _ = audited_run
    modes = [(c["old"], c["new"], c["who"], c["why"]) for c in changes if c["what"] == "mode"]
    assert modes == [
        ("running", "manual", "bob", "tune the coil"),
        ("manual", "running", "bob", "done tuning"),
        ("running", "held", "carol", "sample"),
        ("held", "running", "carol", "sampled"),
    ]
    (ack,) = [c for c in changes if c["what"] == "interlock"]
    assert (ack["module"], ack["alarm"], ack["new"], ack["who"], ack["why"]) == (
        "uv1",
        "sensor_bad",
        "acknowledged",
        "bob",
        "seen it",
    )
    assert ack["old"] is not None  # the module's state when it was acknowledged


def test_requests_over_the_broker_record_login_claim_and_signature(audited_run):
    _summary, changes, actions = audited_run
    held = [c for c in changes if c["what"] == "mode" and c["who"] == "carol"]
    # The hold was logged in and signed; the resume signed but sent without a login.
    assert (held[0]["authenticated"], held[0]["signed"], held[0]["role"]) == (
        True,
        True,
        "operator",
    )
    assert (held[1]["authenticated"], held[1]["signed"]) == (False, True)
    carol = [a for a in actions if a["who"] == "carol"]
    assert carol and all(a["signed"] for a in carol)
    assert carol[0]["authenticated"] is True and carol[-1]["authenticated"] is False


def test_an_unsigned_hold_is_taken_and_recorded_as_unsigned(tmp_path):
    def script(coord, emu):
        if emu.now_ms == 420_000:
            op = coord.transport.bus.client("op2")
            op.publish(
                control.control_topic("demo"),
                control.build_request(
                    "u1", "hold", "dan", "look", role="operator", auth="password"
                ),
            )
            op.poll()
        if emu.now_ms == 430_000:
            coord.request("resume", "dan", "go on")

    summary = run_in_process(LINE, RECIPE, runs_dir=tmp_path, on_tick=script, operator_key=KEY)
    rec = RunRecord.open(summary.record, readonly=True)
    try:
        (hold,) = [c for c in rec.changes() if c["what"] == "mode" and c["new"] == "held"]
    finally:
        rec.close()
    # Claimed a login, but without the operator key's tag: the record says so.
    assert (hold["who"], hold["authenticated"], hold["signed"]) == ("dan", True, False)
