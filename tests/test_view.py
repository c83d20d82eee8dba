"""The web view without a browser: the hub's bounded queues and history, the diagram
layout, where it may bind, and the HTTP side's authentication, CSRF and Origin checks
(Starlette's test client against the real app).  The browser tests are in
tests/test_view_browser.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from host.cli import build_parser
from host.commands.run import DEFAULT_SPEED, resolve_speed
from host.control import build_reply, check_signature, control_topic, parse_request, reply_topic
from host.users import UserStore
from host.view.app import ViewContext, make_app
from host.view.auth import SESSION_COOKIE, Sessions
from host.view.hub import HISTORY_STEP_MS, Hub
from host.view.layout import line_layout
from host.view.server import BindError, check_bind, parse_bind
from line.loader import load_line

ROOT = Path(__file__).resolve().parents[1]
DEMO_LINE = ROOT / "examples" / "lines" / "demo.toml"
ORIGIN = "http://testserver"
KEY = bytes(range(32))


# --- the hub -----------------------------------------------------------------------------


def test_a_viewer_that_never_reads_costs_a_bounded_queue_and_one_wake():
    hub = Hub(viewer_queue=16)
    wakes = []
    stalled = hub.join(lambda: wakes.append(1))
    for i in range(5000):
        hub.put_samples([["pump_a", "pressure", 1_000 * i, float(i)]])
    assert len(stalled.queue) == 16
    assert stalled.dropped == 5000 - 16
    assert len(wakes) == 1  # woken once until it reads: never a queue of wake-ups
    assert '"value"' not in stalled.queue[0] and "4999.0" in stalled.queue[-1]  # newest kept
    stalled.take()
    hub.put_samples([["pump_a", "pressure", 9_999_000, 1.0]])
    assert len(wakes) == 2


def test_a_slow_viewer_does_not_hold_back_a_fast_one():
    hub = Hub(viewer_queue=4)
    slow = hub.join(lambda: None)
    fast = hub.join(lambda: None)
    got = []
    for i in range(20):
        hub.put_samples([["m", "c", i * 1000, i]])
        got.extend(fast.take())
    assert len(got) == 20 and len(slow.queue) == 4


def _hello(hub) -> dict:
    """The hello's messages as one dict: the first (snapshot, phases) + every series'
    history, each of which came as a message of its own."""
    first, *series = (json.loads(m) for m in hub.hello())
    history = {}
    for m in series:
        assert list(m) == ["history"] and len(m["history"]) == 1  # one series a message
        history.update(m["history"])
    return {**first, "history": history}


def test_history_keeps_one_point_per_step_for_an_hour():
    hub = Hub(history_s=60)
    for t in range(0, 120_000, 100):  # 10 Hz for two minutes
        hub.put_samples([["reactor1", "temperature", t, t / 1000]])
    rows = _hello(hub)["history"]["reactor1.temperature"]
    assert len(rows) <= 60 * 1000 // HISTORY_STEP_MS + 2
    assert rows[-1] == [119_900, 119.9]  # the newest of its step
    assert rows[0][0] >= 119_900 - 60_000


def test_phases_and_setpoints_from_snapshots_go_into_the_hello():
    hub = Hub()
    snap = {
        "t_ms": 5000,
        "run": {"phase": "heat", "phase_started_ms": 4000, "phase_elapsed_s": 1.5},
        "modules": [{"id": "reactor1", "values": {"coil_temp": {"setpoint": 80.0, "t_ms": 5000}}}],
    }
    hub.put_snapshot(snap)
    hub.put_snapshot({**snap, "t_ms": 9000, "run": {"phase": "heat"}})
    hub.put_snapshot({**snap, "t_ms": 9500, "run": {"phase": "collect"}})
    hello = _hello(hub)
    assert hello["hello"]["phases"] == [[3500, "heat"], [9500, "collect"]]
    assert hello["history"]["reactor1.coil_temp:sp"] == [[5000, 80.0]]
    assert hello["snapshot"]["run"]["phase"] == "collect"  # the latest


# --- the diagram -------------------------------------------------------------------------


def test_the_diagram_has_every_module_and_part_with_tubes_as_pipes():
    layout = line_layout(load_line(DEMO_LINE))
    ids = {n["id"]: n for n in layout["nodes"]}
    assert {"pump_a", "pump_b", "reactor1", "bpr1", "uv1", "valve1", "mixer"} <= set(ids)
    assert not any(n["kind"] == "tube" for n in layout["nodes"])
    assert {"from": "mixer", "to": "reactor1", "via": ["tube_m"]} in layout["edges"]
    # left to right along the flow
    order = ["pump_a", "mixer", "reactor1", "bpr1", "uv1", "valve1", "collect"]
    cols = [ids[i]["col"] for i in order]
    assert cols == sorted(cols) and len(set(cols)) == len(cols)
    assert ids["pump_a"]["row"] != ids["pump_b"]["row"]
    assert ids["reactor1"]["protections"] == [{"id": "cutout1", "kind": "thermal_cutout"}]


# --- binding -----------------------------------------------------------------------------


def test_a_non_local_bind_is_refused_without_tls_and_users():
    check_bind("127.0.0.1", None, None, 0)
    check_bind("::1", None, None, 0)
    check_bind("localhost", None, None, 0)
    with pytest.raises(BindError) as exc:
        check_bind("0.0.0.0", None, None, 0)
    text = str(exc.value)
    assert "0.0.0.0" in text and "--tls-cert" in text and "skid user add" in text
    with pytest.raises(BindError, match="named users"):
        check_bind("192.168.1.5", "c.pem", "k.pem", 0)
    with pytest.raises(BindError, match="TLS"):
        check_bind("192.168.1.5", None, None, 3)
    with pytest.raises(BindError, match="go together"):
        check_bind("127.0.0.1", "c.pem", None, 1)
    check_bind("192.168.1.5", "c.pem", "k.pem", 1)


@pytest.mark.parametrize(
    "text,why", [("8600", "HOST:PORT"), ("h:x", "not a number"), ("h:70000", "outside")]
)
def test_bad_bind_text_is_named(text, why):
    with pytest.raises(BindError, match=why):
        parse_bind(text)


def test_skid_view_refuses_a_public_bind_before_connecting(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "host.cli", "view", str(DEMO_LINE), "--broker",
         "mqtt://127.0.0.1:9", "--bind", "0.0.0.0:0", "--users-file", str(tmp_path / "u.json")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "refusing to serve the view on 0.0.0.0" in proc.stderr
    assert "--tls-cert" in proc.stderr


def test_demo_view_runs_at_speed_1_unless_told():
    parse = build_parser().parse_args
    assert resolve_speed(parse(["demo", "--view"])) == 1.0
    assert resolve_speed(parse(["demo", "--view", "--speed", "5"])) == 5.0
    assert resolve_speed(parse(["demo"])) == DEFAULT_SPEED
    assert resolve_speed(parse(["run", "l", "r", "--broker", "mqtt://h", "--view"])) == 10.0


# --- the HTTP side -------------------------------------------------------------------------


class RecordingFeed:
    """Stands in for the line follower at the HTTP level: what the app asked for."""

    def __init__(self):
        self.requests = []

    def request(self, action, who, reason, **args):
        self.requests.append((action, who, reason, args))
        future: Future = Future()
        future.set_result({"ok": True, "reason": f"{action} done"})
        return future


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    path = tmp_path_factory.mktemp("users") / "users.json"
    store = UserStore(path, PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    store.add("boss", "supervisor", "boss-password", "Ann Boss", None)
    store.add("olga", "operator", "olga-password", "Olga", "boss")
    store.add("quinn", "qa", "quinn-password", "Quinn", "boss")
    return path


def _client(users, has_key=True, tls=False):
    feed = RecordingFeed()
    hub = Hub()
    ctx = ViewContext(
        hub, feed, line_layout(load_line(DEMO_LINE)), Sessions(users), has_key=has_key, tls=tls
    )
    base = "https://testserver" if tls else "http://testserver"
    return TestClient(make_app(ctx), base_url=base), feed, hub


def _login(client, name, password, origin=ORIGIN):
    r = client.post(
        "/api/login", json={"user": name, "password": password}, headers={"Origin": origin}
    )
    assert r.status_code == 200, r.text
    return client.get("/api/me").json()["csrf"]


def _act(client, csrf, action="hold", origin=ORIGIN, **body):
    headers = {"Origin": origin}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return client.post(
        "/api/action", json={"action": action, "reason": "test", **body}, headers=headers
    )


def test_without_a_session_every_action_is_refused_and_nothing_is_sent(users):
    client, feed, _ = _client(users)
    me = client.get("/api/me").json()
    assert me["user"] is None and me["csrf"] is None
    assert all(why for why in me["permissions"].values())
    for action in ("hold", "resume", "abort", "stop", "ack"):
        r = _act(client, None, action, module="pump_a", alarm="x")
        assert r.status_code == 401, (action, r.text)
        assert "log in" in r.json()["reason"]
    assert feed.requests == []


def test_an_action_without_the_csrf_token_or_from_another_origin_is_refused(users):
    client, feed, _ = _client(users)
    csrf = _login(client, "olga", "olga-password")
    assert _act(client, None).status_code == 403
    assert "CSRF" in _act(client, "wrong").json()["reason"]
    r = _act(client, csrf, origin="http://evil.example")
    assert r.status_code == 403 and "Origin" in r.json()["reason"]
    r = client.post("/api/action", json={"action": "hold", "reason": "x"},
                    headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert r.status_code == 403  # no Origin at all
    assert feed.requests == []
    r = _act(client, csrf)
    assert r.status_code == 200 and r.json() == {"ok": True, "reason": "hold done"}
    assert feed.requests == [("hold", "olga", "test", {"role": "operator", "auth": "password"})]


def test_roles_decide_who_may_act(users):
    client, feed, _ = _client(users)
    csrf = _login(client, "quinn", "quinn-password")
    me = client.get("/api/me").json()
    assert me["permissions"]["stop"] is None and "operator" in me["permissions"]["hold"]
    r = _act(client, csrf, "hold")
    assert r.status_code == 403 and "role" in r.json()["reason"]
    assert _act(client, csrf, "stop").status_code == 200  # any logged-in user
    assert [r[0] for r in feed.requests] == ["stop"]
    client2, feed2, _ = _client(users)
    csrf2 = _login(client2, "boss", "boss-password")  # a supervisor includes the operator
    assert _act(client2, csrf2, "abort").status_code == 200
    r = _act(client2, csrf2, "ack", module="reactor1", alarm="over_temp")
    assert r.status_code == 200
    assert feed2.requests[-1][3]["alarm"] == "over_temp"


def test_every_action_needs_a_reason(users):
    client, feed, _ = _client(users)
    csrf = _login(client, "olga", "olga-password")
    r = client.post("/api/action", json={"action": "hold", "reason": "  "},
                    headers={"Origin": ORIGIN, "X-CSRF-Token": csrf})  # fmt: skip
    assert r.status_code == 400 and "reason" in r.json()["reason"]
    assert feed.requests == []


def test_resume_without_the_operator_key_says_why(users):
    client, feed, _ = _client(users, has_key=False)
    csrf = _login(client, "olga", "olga-password")
    assert "operator key" in client.get("/api/me").json()["permissions"]["resume"]
    r = _act(client, csrf, "resume")
    assert r.status_code == 403 and "--operator-key-file" in r.json()["reason"]
    assert _act(client, csrf, "hold").status_code == 200  # unsigned actions still work
    assert [r[0] for r in feed.requests] == ["hold"]


def test_a_wrong_password_is_refused_and_gives_no_session(users):
    client, _, _ = _client(users)
    r = client.post("/api/login", json={"user": "olga", "password": "nope-nope"},
                    headers={"Origin": ORIGIN})  # fmt: skip
    assert r.status_code == 401 and SESSION_COOKIE not in r.cookies
    r = client.post("/api/login", json={"user": "olga", "password": "olga-password"},
                    headers={"Origin": "http://evil.example"})  # fmt: skip
    assert r.status_code == 403


def test_the_session_cookie_is_httponly_strict_and_secure_under_tls(users):
    client, _, _ = _client(users)
    r = client.post("/api/login", json={"user": "olga", "password": "olga-password"},
                    headers={"Origin": ORIGIN})  # fmt: skip
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    tls_client, _, _ = _client(users, tls=True)
    r = tls_client.post("/api/login", json={"user": "olga", "password": "olga-password"},
                        headers={"Origin": "https://testserver"})  # fmt: skip
    assert "secure" in r.headers["set-cookie"].lower()


def test_logout_ends_the_session(users):
    client, feed, _ = _client(users)
    csrf = _login(client, "olga", "olga-password")
    assert client.post("/api/logout", headers={"Origin": ORIGIN, "X-CSRF-Token": csrf}).json()["ok"]
    assert _act(client, csrf).status_code == 401
    assert feed.requests == []


def test_no_secrets_in_what_the_page_is_served(users):
    """The page, its scripts, the API and the stream carry no password hash and no key."""
    client, _, hub = _client(users)
    hub.put_snapshot({"t_ms": 1, "run": None, "modules": []})
    csrf = _login(client, "boss", "boss-password")
    served = [client.get(p).text for p in ("/", "/api/me", "/api/layout")]
    static = Path(__file__).resolve().parents[1] / "host" / "view" / "static"
    served += [client.get(f"/static/{f.name}").text for f in static.glob("*.*")]
    served.extend(hub.hello())
    text = "\n".join(served)
    hashes = [u["password_hash"] for u in UserStore(users).users.values()]
    for secret in hashes + [KEY.hex(), "boss-password", "$argon2"]:
        assert secret not in text
    assert csrf in text  # the session's own CSRF token is the one thing it gets


def test_a_non_local_view_serves_https_with_secure_cookies(tmp_path, users):
    """TLS end to end: the certificate from --tls-cert/--tls-key, a log-in over HTTPS
    sets a Secure cookie; a key file that is not one is refused with its name."""
    import httpx

    from host.view.serve import ViewOptions, _serve

    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate")
    cert, key = tmp_path / "view.crt", tmp_path / "view.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(BindError, match="not a usable certificate"):
        ViewOptions("127.0.0.1:0", tls_cert=cert, tls_key=tmp_path / "nothing.key")
    options = ViewOptions("127.0.0.1:0", tls_cert=cert, tls_key=key, users_file=users)
    server = _serve(load_line(DEMO_LINE), Hub(), RecordingFeed(), options)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        with httpx.Client(base_url=server.url, verify=False) as client:
            assert "Line stop" in client.get("/").text
            origin = server.url.rstrip("/")
            r = client.post("/api/login", json={"user": "olga", "password": "olga-password"},
                            headers={"Origin": origin})  # fmt: skip
            assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()
    finally:
        server.stop()


# --- the line follower (ViewFeed), stepped with the time passed in ------------------------


class FeedRig:
    """A ViewFeed on a real in-process bus and a real LiveLine; ``wall`` is its clock."""

    def __init__(self, key=None):
        from host.livestate import LiveLine
        from host.transport import InProcessBus
        from host.view.feed import ViewFeed

        self.bus = InProcessBus()
        self.hub = Hub()
        self.wall = 0
        self.sent = []  # what reached the control topic
        self.coordinator = self.bus.client("coordinator")
        self.coordinator.subscribe(control_topic("l1"), lambda t, p: self.sent.append(p))
        self.feed = ViewFeed(
            LiveLine("l1"), self.bus.client("view"), "l1", self.hub, key, lambda: self.wall
        )
        self.viewer = self.hub.join(lambda: None)

    def step(self, wall_ms: int) -> None:
        self.wall = wall_ms
        self.feed.step(1_790_000_000_000 + wall_ms)
        self.coordinator.poll()


def test_a_page_action_is_the_clis_control_request_and_gets_the_coordinators_reply():
    rig = FeedRig(key=KEY)
    future = rig.feed.request("resume", "olga", "sample taken", role="operator", auth="password")
    assert rig.sent == []  # nothing leaves before the owner's step
    rig.step(0)
    body = parse_request(rig.sent[0])
    assert (body["action"], body["who"], body["reason"]) == ("resume", "olga", "sample taken")
    assert body["role"] == "operator" and body["auth"] == "password"
    assert check_signature(body, KEY, body["t"], set()) is None  # signed like `skid resume`
    rig.coordinator.publish(reply_topic("l1"), build_reply(body["id"], True, "resumed"))
    assert not future.done()
    rig.step(10)
    assert future.result(0) == {"ok": True, "reason": "resumed"}


def test_an_unanswered_action_says_so_after_the_timeout():
    from host.view.feed import REPLY_TIMEOUT_MS

    rig = FeedRig()
    future = rig.feed.request("hold", "olga", "why", role="operator", auth="password")
    rig.step(0)
    rig.step(REPLY_TIMEOUT_MS)
    assert not future.done()
    rig.step(REPLY_TIMEOUT_MS + 1)
    assert future.result(0) == {"ok": False, "reason": "no coordinator answered"}


def test_snapshots_are_paced_but_an_event_goes_out_at_once():
    from host.view.feed import SNAPSHOT_EVERY_MS
    from protocol import messages
    from protocol.topics import host_topic, module_topic

    rig = FeedRig()
    rig.step(0)
    assert len(rig.viewer.take()) == 1  # the first snapshot (the link came up)
    rig.coordinator.publish(host_topic("l1", "state"), messages.build_state(True, 5))
    rig.step(100)
    assert rig.viewer.take() == []  # changed, but the last one is 100 ms old
    rig.step(SNAPSHOT_EVERY_MS)
    assert len(rig.viewer.take()) == 1
    event = messages.build_event(1, 500, "trip", "critical", cause="over_pressure")
    rig.coordinator.publish(module_topic("l1", "pump_a", "event"), event)
    rig.step(SNAPSHOT_EVERY_MS + 1)  # 1 ms after the last: a trip does not wait
    sent = rig.viewer.take()
    assert len(sent) == 1 and "over_pressure" in sent[0]
    assert rig.feed.event_seen_ms and rig.feed.event_seen_ms[0][1]["module"] == "pump_a"
