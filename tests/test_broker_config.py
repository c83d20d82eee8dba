"""``skid broker-config``: a real Mosquitto runs the generated files, and paho clients
logged in as modules, host and operator prove the ACL.

Mosquitto 2 drops an unauthorised PUBLISH from an MQTT 3.1.1 client silently (the client
even gets its PUBACK), so non-delivery is proven by a subscriber that IS allowed to read
the topic: it must receive a marker published (by an authorised client) after the spoof
was acknowledged, and must not have received the spoof.  The broker handles one client's
PUBLISH completely (routing included) before it sends the PUBACK, so anything the spoof
could have caused is queued ahead of the marker.
"""

from __future__ import annotations

import os
import queue
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from host.brokerconfig import generate, hash_password, make_accounts, render_acl
from tests.broker import MosquittoBroker, free_port

ROOT = Path(__file__).resolve().parents[1]
LINE_FILE = ROOT / "examples" / "lines" / "demo.toml"
LINE = "demo"
T = 5.0  # bounded waits (s)


def skid(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def start_generated(out: Path, port: int) -> MosquittoBroker:
    """Mosquitto running DIR/mosquitto.conf exactly as generated.  Only as root (the test
    container) one line is added: Mosquitto would otherwise switch to user 'mosquitto',
    which cannot read the 0600 files in the private test directory."""
    broker = MosquittoBroker(port=port)
    text = (out / "mosquitto.conf").read_text()
    if os.geteuid() == 0:
        text += "user root\n"
    broker.config_path.write_text(text)
    return broker.start()


class Client:
    """A paho client (network thread) that records what it receives."""

    def __init__(self, port, username=None, password=None, v5=False, tls_ca=None, will=None):
        self.received: queue.Queue = queue.Queue()
        self.connected: queue.Queue = queue.Queue()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"t-{username}-{time.monotonic_ns()}",
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        if will is not None:
            self.client.will_set(*will)
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.put(rc)
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, bytes(m.payload)))
        self._subs: queue.Queue = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subs.put(rcs)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.rc = self.connected.get(timeout=T)

    @property
    def ok(self) -> bool:
        return not self.rc.is_failure

    def subscribe(self, topic, qos=1):
        self.client.subscribe(topic, qos)
        return self._subs.get(timeout=T)

    def publish(self, topic, payload, qos=1):
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(T)
        assert info.is_published()
        return info

    def until(self, wanted, timeout=T):
        """Every message received until ``wanted`` (topic, payload) arrives."""
        got = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = self.received.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                break
            got.append(msg)
            if msg == wanted:
                return got
        raise AssertionError(f"{wanted} not received within {timeout} s; got {got}")

    def drain(self, wait=0.1):
        got = []
        end = time.monotonic() + wait
        while True:
            try:
                got.append(self.received.get(timeout=max(0.0, end - time.monotonic())))
            except queue.Empty:
                return got

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def topic(module, kind):
    return f"skid/v1/{LINE}/{module}/{kind}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """The demo line's generated configuration, TLS included, running in Mosquitto."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate")
    tmp = tmp_path_factory.mktemp("broker-config")
    out = tmp / "out"
    cert, key = tmp / "server.crt", tmp / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    port, tls_port = free_port(), free_port()
    res = skid(
        "broker-config", str(LINE_FILE), "-o", str(out), "--operators", "alice",
        "--port", str(port), "--bind", "127.0.0.1", "--tls-cert", str(cert),
        "--tls-key", str(key), "--tls-port", str(tls_port), "--conf-dir", str(out),
        "--persistence-dir", str(tmp),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    creds = tomllib.loads((out / "credentials.toml").read_text())
    broker = start_generated(out, port)
    clients = []

    def login(who, v5=False, **kw):
        entry = creds["host"] if who == "host" else creds["modules"].get(who)
        if entry is None:
            entry = creds["operators"][who]
        c = Client(port, entry["username"], entry["password"], v5=v5, **kw)
        clients.append(c)
        assert c.ok, (who, c.rc)
        return c

    yield {
        "out": out, "port": port, "tls_port": tls_port, "cert": cert, "creds": creds,
        "res": res, "login": login, "broker": broker,
    }  # fmt: skip
    for c in clients:
        c.close()
    broker.close()


def test_generated_files_modes_and_no_password_in_output(secured):
    out, creds, res = secured["out"], secured["creds"], secured["res"]
    assert stat.S_IMODE((out / "credentials.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "passwords").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "server.key").stat().st_mode) == 0o600
    modules = set(creds["modules"])
    assert modules == {"pump_a", "pump_b", "reactor1", "bpr1", "uv1", "valve1"}
    every = [creds["host"], *creds["modules"].values(), *creds["operators"].values()]
    assert len({e["password"] for e in every}) == len(every) == 8
    hashed = (out / "passwords").read_text()
    for entry in every:
        assert entry["password"] not in res.stdout + res.stderr
        assert entry["password"] not in hashed
        assert f"{entry['username']}:$7$" in hashed  # PBKDF2-SHA512
    conf = (out / "mosquitto.conf").read_text()
    for line in ("allow_anonymous false", "persistence true", "set_tcp_nodelay true"):
        assert line in conf.splitlines()


def test_anonymous_and_wrong_password_are_refused(secured):
    port = secured["port"]
    for v5 in (False, True):
        anon = Client(port, v5=v5)
        anon.close()
        assert anon.rc.is_failure, anon.rc
        assert anon.rc.value in (5, 135), anon.rc  # not authorized
        user = secured["creds"]["modules"]["pump_a"]["username"]
        wrong = Client(port, user, "not-the-password", v5=v5)
        wrong.close()
        assert wrong.rc.is_failure and wrong.rc.value in (4, 5, 134, 135), wrong.rc


def test_host_commands_every_module_and_reads_all_telemetry(secured):
    login = secured["login"]
    host = login("host")
    host.subscribe(f"skid/v1/{LINE}/#")
    modules = {mid: login(mid) for mid in secured["creds"]["modules"]}
    for mid, c in modules.items():
        c.subscribe(topic(mid, "cmd"))
        c.subscribe(f"skid/v1/{LINE}/host/lease", qos=0)
    for mid in modules:
        host.publish(topic(mid, "cmd"), f"go {mid}".encode())
    host.publish(f"skid/v1/{LINE}/host/lease", b"lease")
    for mid, c in modules.items():
        got = c.until((topic(mid, "cmd"), f"go {mid}".encode()))
        assert all(t == topic(mid, "cmd") for t, _ in got)  # nothing of another module
        c.until((f"skid/v1/{LINE}/host/lease", b"lease"))
    for mid, c in modules.items():
        for kind in ("birth", "data", "event", "ack", "death"):
            c.publish(topic(mid, kind), f"{kind} {mid}".encode())
            host.until((topic(mid, kind), f"{kind} {mid}".encode()))


def test_module_cannot_command_or_impersonate_another_module(secured):
    login = secured["login"]
    host = login("host")
    host.subscribe(f"skid/v1/{LINE}/#")
    pump_b = login("pump_b")
    pump_b.subscribe(topic("pump_b", "cmd"))
    attacker = login("pump_a")  # MQTT 3.1.1: the broker drops silently, PUBACK anyway
    attacker_v5 = login("pump_a", v5=True)  # MQTT 5: the PUBACK says not authorized
    results = []
    attacker_v5.client.on_publish = lambda c, u, mid, rc, p: results.append(rc)
    for kind in ("cmd", "birth", "data", "event", "ack", "death"):
        attacker.publish(topic("pump_b", kind), b"spoof")
        attacker_v5.publish(topic("pump_b", kind), b"spoof5")
    for kind in ("lease", "state", "control", "control_reply", "run"):
        attacker.publish(f"skid/v1/{LINE}/host/{kind}", b"spoof")
    # Markers from the rightful publishers, after every spoof was acknowledged.
    host.publish(topic("pump_b", "cmd"), b"real cmd")
    got = pump_b.until((topic("pump_b", "cmd"), b"real cmd"))
    assert got == [(topic("pump_b", "cmd"), b"real cmd")]
    pump_b.publish(topic("pump_b", "data"), b"real data")
    seen = host.until((topic("pump_b", "data"), b"real data"))
    assert not [m for m in seen if m[1].startswith(b"spoof")], seen
    assert not [m for m in host.drain() + pump_b.drain() if m[1].startswith(b"spoof")]
    assert [rc.value for rc in results] == [135] * 6, results  # MQTT 5 is told why


def test_module_cannot_read_another_modules_commands(secured):
    login = secured["login"]
    host = login("host")
    spy = login("pump_a")
    spy.subscribe(f"skid/v1/{LINE}/#")
    spy.subscribe(topic("pump_b", "cmd"))
    pump_b = login("pump_b")
    pump_b.subscribe(topic("pump_b", "cmd"))
    host.publish(topic("pump_b", "cmd"), b"for pump_b only")
    host.publish(topic("pump_a", "cmd"), b"for pump_a")
    pump_b.until((topic("pump_b", "cmd"), b"for pump_b only"))
    # The spy's own command arrives (its subscriptions work); pump_b's never does.
    got = spy.until((topic("pump_a", "cmd"), b"for pump_a"))
    assert got == [(topic("pump_a", "cmd"), b"for pump_a")]
    assert spy.drain() == []


def test_will_on_another_modules_death_topic_is_not_delivered(secured):
    login, port, creds = secured["login"], secured["port"], secured["creds"]
    host = login("host")
    host.subscribe(f"skid/v1/{LINE}/+/death")
    a = creds["modules"]["pump_a"]
    liar = Client(port, a["username"], a["password"], will=(topic("pump_b", "death"), b"fake"))
    liar.client.loop_stop()
    liar.client.socket().close()  # dies without DISCONNECT: the broker acts on the will
    honest = Client(port, a["username"], a["password"], will=(topic("pump_a", "death"), b"dead"))
    assert honest.ok
    honest.client.loop_stop()
    honest.client.socket().close()
    got = host.until((topic("pump_a", "death"), b"dead"))
    assert (topic("pump_b", "death"), b"fake") not in got + host.drain()


def test_operator_uses_control_topics_but_cannot_command_modules(secured):
    login = secured["login"]
    host = login("host")
    host.subscribe(f"skid/v1/{LINE}/host/control")
    pump_a = login("pump_a")
    pump_a.subscribe(topic("pump_a", "cmd"))
    alice = login("alice")
    alice.subscribe(f"skid/v1/{LINE}/host/control_reply")
    alice.subscribe(f"skid/v1/{LINE}/+/data")
    alice.publish(topic("pump_a", "cmd"), b"operator spoof")
    alice.publish(f"skid/v1/{LINE}/host/control", b"hold please")
    host.until((f"skid/v1/{LINE}/host/control", b"hold please"))
    host.publish(f"skid/v1/{LINE}/host/control_reply", b"held")
    alice.until((f"skid/v1/{LINE}/host/control_reply", b"held"))
    alice.subscribe(f"skid/v1/{LINE}/host/run")  # the run status, for skid status and views
    host.publish(f"skid/v1/{LINE}/host/run", b"running")
    alice.until((f"skid/v1/{LINE}/host/run", b"running"))
    pump_a.publish(topic("pump_a", "data"), b"42")
    alice.until((topic("pump_a", "data"), b"42"))
    host.publish(topic("pump_a", "cmd"), b"marker")
    assert pump_a.until((topic("pump_a", "cmd"), b"marker")) == [
        (topic("pump_a", "cmd"), b"marker")
    ]


def test_tls_listener(secured):
    creds = secured["creds"]["host"]
    host = Client(secured["tls_port"], creds["username"], creds["password"], tls_ca=secured["cert"])
    assert host.ok
    host.subscribe(f"skid/v1/{LINE}/host/state")
    host.publish(f"skid/v1/{LINE}/host/state", b"over tls")
    host.until((f"skid/v1/{LINE}/host/state", b"over tls"))
    host.close()


def test_host_transport_speaks_tls_with_credentials_from_the_environment(secured, monkeypatch):
    from host.transport import MqttTransport, TransportError

    creds = secured["creds"]["host"]
    monkeypatch.setenv("SKID_MQTT_USERNAME", creds["username"])
    monkeypatch.setenv("SKID_MQTT_PASSWORD", creds["password"])
    monkeypatch.setenv("SKID_MQTT_CA", str(secured["cert"]))
    got = []
    t = MqttTransport(f"mqtts://127.0.0.1:{secured['tls_port']}", "tls-host")
    t.subscribe(f"skid/v1/{LINE}/host/state", lambda _t, p: got.append(p))
    t.connect(timeout_s=10)
    try:
        t.publish(f"skid/v1/{LINE}/host/state", b"host over tls")
        end = time.monotonic() + 5
        while not got and time.monotonic() < end:
            t.poll(timeout_s=0.1)
        assert got == [b"host over tls"]
    finally:
        t.close()
    monkeypatch.setenv("SKID_MQTT_PASSWORD", "wrong")
    with pytest.raises(TransportError) as exc:
        MqttTransport(f"mqtts://127.0.0.1:{secured['tls_port']}", "tls-bad").connect(timeout_s=10)
    assert exc.value.reason == "refused"


def test_edge_process_logs_in_with_its_credentials(secured):
    """`skid edge` (the Raspberry Pi runtime) takes its account from the environment (as
    the systemd unit's EnvironmentFile provides it) and its birth reaches the host."""
    login, creds = secured["login"], secured["creds"]
    host = login("host")
    host.subscribe(topic("uv1", "birth"))
    env = dict(os.environ)
    env["SKID_MQTT_USERNAME"] = creds["modules"]["uv1"]["username"]
    env["SKID_MQTT_PASSWORD"] = creds["modules"]["uv1"]["password"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "edge", "--line-file", str(LINE_FILE)]
        + ["--module-id", "uv1", "--emulate", "--line", LINE, "--insecure"]
        + ["--broker", f"mqtt://127.0.0.1:{secured['port']}", "--duration", "30"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        t, payload = host.received.get(timeout=30)
        assert t == topic("uv1", "birth") and payload
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert creds["modules"]["uv1"]["password"] not in err


def test_python_hashed_password_file_is_accepted_and_persistence_saves(tmp_path):
    gen = generate(
        "l1", ["m1"], tmp_path / "out", conf_dir=str(tmp_path / "out"),
        persistence_dir=str(tmp_path), port=free_port(), bind="127.0.0.1",
        use_mosquitto_passwd=False,
    )  # fmt: skip
    assert gen.hashed_by == "python"
    port = int((tmp_path / "out" / "mosquitto.conf").read_text().split("listener ")[1].split()[0])
    broker = start_generated(tmp_path / "out", port)
    try:
        m1 = next(a for a in gen.accounts if a.name == "m1")
        good = Client(port, m1.username, m1.password)
        assert good.ok
        good.close()
        bad = Client(port, m1.username, m1.password + "x")
        bad.close()
        assert bad.rc.is_failure
        broker.stop()
        assert (tmp_path / "mosquitto.db").exists()  # persistence on: saved at shutdown
    finally:
        broker.close()


def test_hash_matches_mosquitto_format():
    h = hash_password("secret", salt=b"\x00" * 12, iterations=101)
    assert h.startswith("$7$101$AAAAAAAAAAAAAAAA$") and len(h.split("$")[4]) == 88


def test_acl_gives_no_module_rights_to_other_accounts():
    acl = render_acl("l1", make_accounts("l1", ["m1", "m2"], ["op"]))
    blocks = {b.split("\n")[1]: b for b in acl.split("\n\n") if b.startswith("# ")}
    assert "topic write skid/v1/l1/m2/cmd" not in blocks["user l1.m1"]
    assert "pattern" not in acl
    assert "topic write skid/v1/l1/+/cmd" in blocks["user l1.host"]
    assert "cmd" not in blocks["user l1.operator.op"]


def test_cli_refuses_bad_arguments(tmp_path):
    res = skid("broker-config", str(LINE_FILE), "-o", str(tmp_path / "x"), "--tls-cert", "c")
    assert res.returncode == 2 and "--tls-key" in res.stderr
    res = skid("broker-config", str(LINE_FILE), "-o", str(tmp_path / "x"), "--operators", "pump_a")
    assert res.returncode == 2 and "pump_a" in res.stderr
    res = skid("broker-config", str(tmp_path / "missing.toml"), "-o", str(tmp_path / "x"))
    assert res.returncode == 2 and "missing.toml" in res.stderr
