"""The live web view in a real browser (Debian's Chromium, headless, through Playwright)
on real runs: the demo recipe on the emulated demo line, in process (coordinator, real
edge runtimes, plant emulator), paced to a multiple of wall time by the view exactly as
``skid demo --view`` does, with the real ``LiveLine`` fed by the run's bus.

Screenshots go to ``$SKID_SCREENSHOTS`` (``SKID_SCREENSHOTS=docs/img`` refreshes the ones
the docs show: view.png is docs/cli.md's), else a scratch directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from emulator.faults import line_targets, parse_fault_option
from host import dryrun
from host.record import RunRecord
from host.users import UserStore
from host.view.serve import InProcessView, ViewOptions
from line.loader import load_line
from tests.screens import screenshot_dir

ROOT = Path(__file__).resolve().parents[1]
DEMO_LINE = ROOT / "examples" / "lines" / "demo.toml"
DEMO_RECIPE = ROOT / "examples" / "recipes" / "demo.toml"
IMG = screenshot_dir()
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.fail("no chromium: install the Debian package 'chromium'", pytrace=False)

pytestmark = pytest.mark.xdist_group("view_browser")
KEY = bytes(range(100, 132))
PASSWORDS = {"boss": "boss-password", "olga": "olga-password", "quinn": "quinn-password"}
TRIP_BOUND_MS = 2000


class LiveRun:
    """The demo recipe run in a thread of this process, served by an ``InProcessView``.
    ``trip_wall_ms``: wall time at which the coordinator first had a trip."""

    def __init__(self, tmp: Path, users: Path, speed: float, faults=(), speed_after_trip=None):
        line = load_line(DEMO_LINE)
        modules, channels = line_targets(line)
        self.faults = [parse_fault_option(f, modules, channels) for f in faults]
        self.view = InProcessView(
            line, ViewOptions("127.0.0.1:0", users_file=users, operator_key=KEY), speed
        )
        self.url = self.view.url
        self.tmp = tmp
        self.speed_after_trip = speed_after_trip
        self.coord = None
        self.trip_wall_ms: int | None = None
        self.summary = None
        self.error: BaseException | None = None
        self.stop_reason: str | None = None
        self.log: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_tick(self, coord, plant) -> None:
        self.coord = coord
        if coord.trips and self.trip_wall_ms is None:
            self.trip_wall_ms = int(time.time() * 1000)
            if self.speed_after_trip is not None:  # time for a person to act on it
                self.view.set_speed(self.speed_after_trip)
        self.view.on_tick(coord, plant)

    def _run(self) -> None:
        try:
            self.summary = dryrun.run_in_process(
                DEMO_LINE,
                DEMO_RECIPE,
                faults=self.faults,
                on_bus=self.view.on_bus,
                on_tick=self._on_tick,
                runs_dir=self.tmp,
                operator_key=KEY,
                log=self.log.append,
                should_abort=lambda: self.stop_reason,
                max_s=7200,
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the tests
            self.error = exc

    def wait(self, what, timeout_s: float = 60.0):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            value = what()
            if value:
                return value
            assert self.error is None, self.error
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s} s; log tail: {self.log[-5:]}")

    def close(self) -> None:
        self.stop_reason = "test over"
        self.thread.join(timeout=60)
        self.view.close()


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    path = tmp_path_factory.mktemp("users") / "users.json"
    store = UserStore(path, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    store.add("boss", "supervisor", PASSWORDS["boss"], "Ann Boss", None)
    store.add("olga", "operator", PASSWORDS["olga"], "Olga Operator", "boss")
    store.add("quinn", "qa", PASSWORDS["quinn"], "Quinn QA", "boss")
    return path


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory, users):
    live = LiveRun(tmp_path_factory.mktemp("runs"), users, speed=30)
    yield live
    live.close()


def _page(browser, url, user=None):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready]")
    if user is not None:
        page.fill("#login-user", user)
        page.fill("#login-password", PASSWORDS[user])
        page.click("#login button")
        page.wait_for_selector("#whoami:not([hidden])")
    page.errors = errors
    return page


def _act(page, button: str, reason: str) -> str:
    page.click(button)
    page.fill("#ask-reason", reason)
    page.click("#ask-ok")
    page.wait_for_function(
        "t => document.getElementById('last-reply').textContent.startsWith(t)",
        arg=page.text_content(button).strip(),
    )
    return page.text_content("#last-reply")


def test_the_diagram_shows_the_demo_lines_modules(run, browser):
    page = _page(browser, run.url)
    for mid in ("pump_a", "pump_b", "reactor1", "bpr1", "uv1", "valve1"):
        page.wait_for_selector(f"#node-{mid} text.value", timeout=30_000)
        assert page.text_content(f"#node-{mid} text.id") == mid
    assert "bar" in page.text_content("#node-bpr1")  # values with units
    assert page.text_content("#line-stop") == "Line stop"
    assert page.is_visible("#line-stop")
    assert page.errors == []


def test_values_update(run, browser):
    page = _page(browser, run.url)
    page.wait_for_function(
        "() => /temperature [0-9]/.test(document.getElementById('node-reactor1').textContent)",
        timeout=30_000,
    )

    def reading():
        text = page.text_content("#node-reactor1 text.value[data-channel=temperature]")
        return float(re.search(r"temperature ([-0-9.]+)", text).group(1))

    first = reading()
    run.wait(lambda: abs(reading() - first) > 0.5, timeout_s=30)  # the coil heats


def test_an_unauthorised_viewer_cannot_act(run, browser):
    page = _page(browser, run.url)
    run.wait(lambda: page.text_content("#state") == "running", 30)
    for b in ("hold", "resume", "abort"):
        assert page.is_disabled(f"#controls button[data-action={b}]")
    assert page.is_disabled("#line-stop")
    assert "log in" in page.text_content("#control-note").lower()
    post = """async ([csrf, action]) => {
        const h = {"Content-Type": "application/json"};
        if (csrf) h["X-CSRF-Token"] = csrf;
        const r = await fetch("/api/action", {method: "POST", headers: h,
            body: JSON.stringify({action, reason: "try"})});
        return r.status; }"""
    for action in ("hold", "abort", "stop", "resume"):
        assert page.evaluate(post, [None, action]) == 401
    qa = _page(browser, run.url, "quinn")  # logged in, but not an operator
    run.wait(lambda: qa.is_enabled("#line-stop"), 10)
    assert qa.is_disabled("#controls button[data-action=hold]")
    csrf = qa.evaluate("() => me.csrf")
    assert qa.evaluate(post, [csrf, "hold"]) == 403
    assert qa.evaluate(post, [None, "stop"]) == 403  # logged in, but no CSRF token
    assert run.coord.sequencer.state == "running"
    actions = [
        a["what"] for a in RunRecord.open(run.coord.record.path, readonly=True).operator_actions()
    ]
    assert actions == []


def test_a_viewer_that_never_reads_is_dropped_behind_and_the_run_goes_on(run, browser):
    """A viewer that never takes its messages (what a page whose connection stalled is to
    the hub: its SSE task waits on the socket) in a real run: its queue fills and drops its
    oldest messages, the run keeps its pace, and a page opened meanwhile gets live data."""
    run.wait(lambda: run.coord, 30)
    hub = run.view.hub
    hub.viewer_queue = 8  # for this viewer: full within seconds
    stalled = hub.join(lambda: None)
    hub.viewer_queue = 256
    try:
        sim0, wall0 = run.coord.host_ms(), time.monotonic()
        run.wait(lambda: stalled.dropped > 0, 30)
        assert len(stalled.queue) == 8
        page = _page(browser, run.url)
        first = page.evaluate("() => document.getElementById('diagram').dataset.updated")
        page.wait_for_function(
            "t => document.getElementById('diagram').dataset.updated !== t", arg=first
        )
        sim_s = (run.coord.host_ms() - sim0) / 1000
        wall_s = time.monotonic() - wall0
        assert sim_s > 0.5 * 30 * wall_s - 2  # still about 30x with the stalled viewer
    finally:
        hub.leave(stalled)


@pytest.fixture
def own_run(tmp_path, users):
    """A run of its own: the shared ``run`` may have finished by the time a test that needs
    a running recipe gets to it on a loaded machine."""
    live = LiveRun(tmp_path, users, speed=30)
    yield live
    live.close()


def test_hold_resume_and_abort_from_the_page_reach_the_coordinator_and_the_record(own_run, browser):
    run = own_run
    page = _page(browser, run.url, "olga")
    run.wait(lambda: page.text_content("#state") == "running", 60)
    page.wait_for_timeout(9000)  # some trend history for the screenshot
    page.screenshot(path=str(IMG / "view.png"))
    assert "accepted" in _act(page, "#controls button[data-action=hold]", "sample the outlet")
    run.wait(lambda: run.coord.sequencer.state == "held", 10)
    page.wait_for_function("() => document.getElementById('state').textContent === 'held'")
    page.screenshot(path=str(IMG / "view-held.png"))
    assert "accepted" in _act(page, "#controls button[data-action=resume]", "sample taken")
    run.wait(lambda: run.coord.sequencer.state == "running", 10)
    assert "accepted" in _act(page, "#controls button[data-action=abort]", "end of the test")
    summary = run.wait(lambda: run.summary, 120)
    assert summary.outcome == "aborted"
    record = RunRecord.open(summary.record, readonly=True)
    acts = [a for a in record.operator_actions() if a["who"] == "olga"]
    assert [a["reason"] for a in acts] == ["sample the outlet", "sample taken", "end of the test"]
    assert all(a.get("authenticated") and a.get("role") == "operator" for a in acts)
    assert [re.match(r"\w+", a["what"]).group() for a in acts] == ["hold", "resume", "abort"]
    assert page.errors == []


def test_a_clog_shows_its_trip_on_the_right_module_within_2_s(tmp_path, users, browser):
    live = LiveRun(tmp_path, users, speed=10, faults=["clog:reactor1@60"], speed_after_trip=0.05)
    try:
        page = _page(browser, live.url)
        # The page notes the wall time it first shows a trip on each module.
        page.evaluate("""() => { window.tripSeen = {};
            new MutationObserver(() => {
              for (const g of document.querySelectorAll('g.node.trip'))
                if (!(g.dataset.module in window.tripSeen)) window.tripSeen[g.dataset.module] = Date.now();
            }).observe(document.getElementById('diagram'),
                       {subtree: true, attributes: true, attributeFilter: ['class']}); }""")
        live.wait(lambda: live.trip_wall_ms, 120)
        module = live.coord.trips[0].module
        seen = page.wait_for_function(
            "m => window.tripSeen[m]", arg=module, timeout=10_000
        ).json_value()
        latency_ms = seen - live.trip_wall_ms
        print(f"trip on {module}: shown {latency_ms} ms (wall) after the coordinator had it")
        assert latency_ms <= TRIP_BOUND_MS
        assert "TRIP" in page.text_content(f"#node-{module}")
        page.wait_for_selector(f"#alarms tr[data-module={module}]")
        page.screenshot(path=str(IMG / "view-trip.png"))
        # An operator acknowledges one of its alarms from the list.
        olga = _page(browser, live.url, "olga")
        row = f"#alarms tr.unacked[data-module={module}]:not([data-key^='trip:'])"
        olga.wait_for_selector(f"{row} button:not([disabled])")
        cause = olga.text_content(f"{row} td:nth-child(3)")
        olga.click(f"{row} button")
        olga.fill("#ask-reason", "seen, pressure relieved")
        olga.click("#ask-ok")
        olga.wait_for_function(
            "() => /^Acknowledge: /.test(document.getElementById('last-reply').textContent)"
        )
        assert "accepted" in olga.text_content("#last-reply"), (
            olga.text_content("#last-reply"),
            live.summary,
        )

        def olgas():  # the record commits every 0.5 simulated s: 10 s of wall time here
            acts = RunRecord.open(live.coord.record.path, readonly=True).operator_actions()
            return [a for a in acts if a["who"] == "olga"]

        ack = live.wait(olgas, 30)
        assert len(ack) == 1 and ack[0]["what"].startswith("ack") and module in ack[0]["what"]
        assert ack[0]["reason"] == "seen, pressure relieved"
        olga.wait_for_function(
            "([m, c]) => last.alarms.some(a => a.module === m && a.cause === c && a.acked)",
            arg=[module, cause],
        )
        live.view.set_speed(50)  # the rest of the shutdown
        # Trips elsewhere are the cascade of the first: never on a module that did not trip.
        tripped = {t.module for t in live.coord.trips}
        shown = set(page.evaluate("() => Object.keys(window.tripSeen)"))
        assert shown <= tripped
    finally:
        live.close()


def test_any_logged_in_user_may_stop_the_line_with_one_confirmation(tmp_path, users, browser):
    live = LiveRun(tmp_path, users, speed=20)
    try:
        page = _page(browser, live.url, "quinn")  # qa: no operator role
        live.wait(lambda: page.text_content("#state") == "running", 60)
        page.click("#line-stop")
        assert page.input_value("#ask-reason")  # a reason is offered: one click confirms
        page.click("#ask-ok")
        page.wait_for_function(
            "() => /^Line stop: accepted/.test(document.getElementById('last-reply').textContent)"
        )
        summary = live.wait(lambda: live.summary, 120)
        assert summary.outcome == "aborted" and "by quinn" in summary.reason
        acts = RunRecord.open(summary.record, readonly=True).operator_actions()
        stop = [a for a in acts if a["who"] == "quinn"]
        assert stop[0]["what"].startswith("stop") and stop[0]["role"] == "qa"
        assert stop[0]["reason"] == "Line stop from the web view"
    finally:
        live.close()


def test_a_silent_module_is_drawn_offline_with_stale_values_and_their_age(tmp_path, users, browser):
    live = LiveRun(tmp_path, users, speed=10, faults=["power-loss:uv1@30+120"])
    try:
        page = _page(browser, live.url)
        page.wait_for_selector("#node-uv1 text.value:not(.stale)", timeout=30_000)
        page.wait_for_selector("#node-uv1.offline text.value.stale", timeout=60_000)
        text = page.text_content("#node-uv1")
        assert "offline" in text and re.search(r"\(\d+ s\)", text), text  # the value's age
        assert page.get_attribute("#node-uv1 rect.stale-bg", "class") == "stale-bg"  # hatched
        assert not page.query_selector("#node-reactor1 text.value.stale")  # the others not
        page.screenshot(path=str(IMG / "view-stale.png"))
    finally:
        live.close()


def test_no_secrets_in_the_page_or_the_stream(run, browser):
    page = _page(browser, run.url, "olga")
    texts = [page.content()]
    for path in ("/static/view.js", "/static/diagram.js", "/static/trends.js", "/api/me"):
        texts.append(page.evaluate("p => fetch(p).then(r => r.text())", path))
    texts.extend(run.view.hub.hello())
    text = "\n".join(texts)
    hashes = [u["password_hash"] for u in UserStore(run.view.options.users_file).users.values()]
    for secret in hashes + [KEY.hex(), PASSWORDS["olga"], "$argon2"]:
        assert secret not in text


def test_skid_demo_view_prints_the_url_and_serves_the_page(tmp_path, browser):
    err = tmp_path / "stderr.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "demo", "--view", "--speed", "60", "--bind",
         "127.0.0.1:0", "--no-report", "--runs-dir", str(tmp_path), "--users-file",
         str(tmp_path / "none.json")],
        cwd=ROOT, stderr=err.open("w"), stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        end = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < end and proc.poll() is None:
            m = re.search(r"live view at (http://127\.0\.0\.1:\d+/)", err.read_text())
            url = m and m.group(1)
            time.sleep(0.1)
        assert url, f"no URL printed: {err.read_text()}"
        page = _page(browser, url)
        page.wait_for_selector("#node-valve1 text.value", timeout=30_000)
        assert "log in" in page.evaluate("() => me.permissions.hold")  # read-only
        assert "no --operator-key-file: resume is unavailable" in err.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
