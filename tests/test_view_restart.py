"""The web view of a line run over a real broker survives a broker restart and a
coordinator restart, and shows both as gaps.

The demo line runs as separate processes (one ``skid edge`` per module, one ``skid
emulate``) on a persistent Mosquitto, 2x real time; its coordinator is a ``skid run``
process; the view is ``host.view.serve.BrokerView`` (what ``skid view`` serves) with its
own MQTT connection, read by headless Chromium.  The broker is restarted, then the
coordinator is killed (SIGKILL: no goodbye, the broker sends its will) and re-attached
with ``skid run --resume``.  Waits are on conditions with bounded timeouts."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from host.launcher import EmulatedLineProcesses
from host.view.serve import BrokerView, ViewOptions
from line.loader import load_line
from tests.broker import MosquittoBroker
from tests.screens import screenshot_dir
from tests.test_run_broker import LINE, QUICK, Skid

# Slower than test_run_broker's 5x: a Chromium and the view share the machine with the
# line's processes, and a wall-clock stall d looks like SPEED x d to the dead-man timers.
SPEED = 2.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.fail("no chromium: install the Debian package 'chromium'", pytrace=False)

GAPS = "() => (last && last.gaps || []).map(g => [g.what, g.to_ms !== null])"
CLOSED_GAP = "w => (last && last.gaps || []).some(g => g.what === w && g.to_ms !== null)"
OPEN_GAP = "w => (last && last.gaps || []).some(g => g.what === w && g.to_ms === null)"


def _link_text(page) -> str:
    return page.text_content("#link-text") or ""


def _wait(page, js: str, timeout_s: float, arg=None):
    js = js.replace("_(", "document.getElementById(")
    try:
        return page.wait_for_function(js, arg=arg, timeout=timeout_s * 1000).json_value()
    except sync_api.TimeoutError:
        seen = page.evaluate(
            "() => last && [last.run && last.run.state, last.coordinator, last.gaps]"
        )
        raise AssertionError(
            f"{js} ({arg}) not true within {timeout_s} s; the page had {seen}"
        ) from None


def test_the_view_survives_a_broker_and_a_coordinator_restart_showing_the_gaps(tmp_path):
    broker = MosquittoBroker(persistence=True).start()
    url = f"mqtt://127.0.0.1:{broker.port}"
    view = None
    try:
        with (
            EmulatedLineProcesses(LINE, url, speed=SPEED, log_dir=tmp_path / "logs") as line,
            sync_api.sync_playwright() as p,
        ):
            common = [
                "--broker", url, "--line-id", line.line_id, "--epoch", repr(line.epoch),
                "--speed", str(SPEED), "--runs-dir", str(tmp_path), "--json", "--no-report",
            ]  # fmt: skip
            first = Skid("run", str(LINE), str(QUICK), *common)
            view = BrokerView(
                load_line(LINE),
                line.line_id,
                url,
                ViewOptions("127.0.0.1:0", users_file=tmp_path / "users.json"),
            )
            run_id = first.run_id()
            first.wait_for("phase pressurise", 120.0)
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(view.url)
            _wait(page, "() => last && last.run && last.run.state === 'running'", 60)
            assert _link_text(page) == "broker, coordinator ok"

            broker.restart()
            _wait(page, CLOSED_GAP, 60, "broker")
            _wait(page, "() => _('link-text').textContent.endsWith('ok')", 30)
            assert page.text_content("#node-reactor1 text.id") == "reactor1"

            first.proc.send_signal(signal.SIGKILL)  # no shutdown sequence, no goodbye
            first.proc.wait(10)
            _wait(page, "() => /coordinator offline/.test(_('link-text').textContent)", 30)
            _wait(page, OPEN_GAP, 30, "coordinator")
            page.screenshot(path=str(screenshot_dir() / "view-gap.png"))

            second = Skid("run", str(LINE), str(QUICK), *common, "--resume", run_id)
            _wait(page, CLOSED_GAP, 60, "coordinator")
            gaps = page.evaluate(GAPS)
            assert ["coordinator", True] in gaps and ["broker", True] in gaps
            assert page.evaluate("() => last.run.run_id") == run_id
            code, summary = second.finish(timeout_s=180)
            assert summary["run_id"] == run_id, second.err
            browser.close()
    finally:
        if view is not None:
            view.close()
        broker.close()
    # The launcher's processes stop themselves when their parent is gone.
    time.sleep(0.2)


def test_line_stop_from_the_page_commands_every_module_over_the_broker(broker, tmp_path):
    """What `skid stop` does, from the page: every module aborts (signed where keyed),
    the coordinator is told, and the page lists each module's answer."""
    from argon2 import PasswordHasher

    from host.users import UserStore

    users = tmp_path / "users.json"
    store = UserStore(users, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    store.add("boss", "supervisor", "boss-password", "Ann Boss", None)
    url = f"mqtt://127.0.0.1:{broker.port}"
    view = None
    with (
        EmulatedLineProcesses(LINE, url, speed=SPEED, log_dir=tmp_path / "logs") as line,
        sync_api.sync_playwright() as p,
    ):
        common = [
            "--broker", url, "--line-id", line.line_id, "--epoch", repr(line.epoch),
            "--speed", str(SPEED), "--runs-dir", str(tmp_path), "--json", "--no-report",
        ]  # fmt: skip
        run = Skid("run", str(LINE), str(QUICK), *common)
        try:
            view = BrokerView(
                load_line(LINE), line.line_id, url, ViewOptions("127.0.0.1:0", users_file=users)
            )
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(view.url)
            page.wait_for_selector("body[data-ready]")
            page.fill("#login-user", "boss")
            page.fill("#login-password", "boss-password")
            page.click("#login button")
            _wait(page, "() => last && last.run && last.run.state === 'running'", 60)
            page.click("#line-stop")
            page.click("#ask-ok")
            _wait(page, "() => /^Line stop: /.test(_('last-reply').textContent)", 30)
            reply = page.text_content("#last-reply")
            assert reply.startswith("Line stop: accepted"), reply
            for mid in load_line(LINE).modules:
                assert f"{mid}: stopped" in reply
            assert "coordinator: every module commanded to abort" in reply
            code, summary = run.finish(timeout_s=120)
            assert summary["outcome"] == "aborted" and "boss" in summary["reason"], summary
            browser.close()
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
            if view is not None:
                view.close()
