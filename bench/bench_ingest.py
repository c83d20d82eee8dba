"""Host ingest over Mosquitto: N emulated modules at 10 Hz into the run record, zero loss.

Each step of the ramp starts, on a private Mosquitto (tests/broker.py, a free port; never
the system broker), in separate processes:

* the host: ``MqttTransport`` (paho, MQTT 5) -> ``Registry`` -> ``RunRecord`` through
  ``host.ingest.Ingest``, flushing once the oldest buffered sample has waited 10 ms;
* the peer: a bare paho-mqtt subscriber to the same topics that only counts messages;
* ``PUBLISHERS`` publisher processes, each one paho client (MQTT 3.1.1, as modules speak)
  standing in for N/PUBLISHERS modules.  Every module is the demo line's reactor board
  (7 channels: three temperatures, heater, cut-out, e-stop, coil setpoint): it sends its
  BIRTH (QoS 1), then TELEMETRY (QoS 0, ``protocol.messages.TelemetryCodec``) at 10 Hz on
  ``skid/v1/<line>/<module>/data``, the modules' phases spread evenly over the period.

Publish-to-stored latency: each module's "boot" is the Unix epoch, so the telemetry's
``t_ms`` is the publisher's wall clock (ms) taken just before ``publish``; the host
subtracts it from its wall clock right after the flush that committed the sample (same
machine, same clock).  ``t_ms`` is truncated to whole ms, so latencies read up to 1 ms
high.

CPU: every process's own CPU time (``time.process_time``: all its threads) over the
step, divided by the telemetry messages it handled; Mosquitto's from /proc.  The
publishers, the broker, the host and the peer share this machine's cores (and whatever
else runs on it), so the host's numbers are those of a host sharing its machine.

A step is *sustained* when every telemetry message published reached the host, every
one is in the run record (rows counted in SQLite after the run), no sequence gap or
malformed message was seen, and the host kept up (p99 latency under 1 s; a host falling
behind shows latency growing over the step).  The ramp goes 500, 750, 1000, 1500 modules
until a step fails, or down to 250 and 100 when 500 fails.

TCP: the broker runs with ``set_tcp_nodelay true`` (what a deployment that cares about
latency sets; Mosquitto's default leaves Nagle's algorithm on, which adds tens of ms to
small messages) and the publishers set TCP_NODELAY on their sockets (one connection
carries hundreds of modules here, which a real module's connection never does).

Environment: ``FLOWSKID_INGEST_SECONDS`` (default 60) is each step's length;
``FLOWSKID_INGEST_MODULES`` (e.g. ``500`` or ``250,500``) runs just those steps;
``FLOWSKID_INGEST_FLUSH_MS`` (default 10) the host's flush age;
``FLOWSKID_INGEST_NODELAY=0`` leaves the broker's Nagle on; ``FLOWSKID_INGEST_PROFILE=DIR``
writes a cProfile of the host's main thread there.
Run alone: ``.venv/bin/python -m bench.bench_ingest``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench.common import record

RATE_HZ = 10
PUBLISHERS = 2
FLUSH_EVERY_MS = int(os.environ.get("FLOWSKID_INGEST_FLUSH_MS", "10"))
TARGET_MODULES = 500
TARGET_P99_MS = 50
SUSTAINED_P99_MS = 1000  # beyond this the host is not keeping up
RAMP_UP = (500, 750, 1000, 1500)
RAMP_DOWN = (250, 100)
DRAIN_QUIET_S = 0.5  # after the publishers stop: done when nothing arrived for this long
DRAIN_MAX_S = 30.0
BROKER_NODELAY = os.environ.get("FLOWSKID_INGEST_NODELAY", "1") != "0"
PEER = "paho-mqtt subscriber, counting only"


def _seconds() -> float:
    raw = os.environ.get("FLOWSKID_INGEST_SECONDS", "60")
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"FLOWSKID_INGEST_SECONDS={raw!r}: expected seconds (> 0)") from None
    if not seconds > 0:
        raise ValueError(f"FLOWSKID_INGEST_SECONDS={raw!r}: expected seconds (> 0)")
    return seconds


def _fixed_steps() -> list[int] | None:
    raw = os.environ.get("FLOWSKID_INGEST_MODULES", "").strip()
    if not raw:
        return None
    try:
        steps = [int(x) for x in raw.split(",")]
    except ValueError:
        steps = []
    if not steps or any(n < PUBLISHERS for n in steps):
        raise ValueError(
            f"FLOWSKID_INGEST_MODULES={raw!r}: expected module counts >= {PUBLISHERS}, "
            "comma-separated (e.g. 500 or 250,500)"
        )
    return steps


def _log(text: str) -> None:
    print(f"bench_ingest: {text}", file=sys.stderr, flush=True)


# --- the module being emulated ---------------------------------------------------------


def reactor_template() -> tuple[bytes, list[list[float]]]:
    """The demo line's reactor BIRTH and 64 telemetry value lists for it (temperatures
    swinging around 80 degC, heater duty with them)."""
    from emulator.emulation import LineEmulation
    from protocol import messages

    emu = LineEmulation(Path(__file__).resolve().parent.parent / "examples/lines/demo.toml")
    b = emu.sinks["reactor1"].births[-1]
    birth = messages.build_birth(
        b.module_id,
        b.module_kind,
        b.firmware,
        b.config_hash,
        b.reset_cause,
        b.bdseq,
        b.boot_nonce,
        b.channels,
        b.states,
        b.state,
    )
    rows = []
    for k in range(64):
        swing = math.sin(2 * math.pi * k / 64)
        by_name = {
            "temp_a": 80.0 + 1.5 * swing,
            "temp_b": 80.1 + 1.5 * swing,
            "temperature": 80.05 + 1.5 * swing,
            "heater": 0.42 - 0.2 * swing,
            "cutout": 0.0,
            "estop": 0.0,
            "coil_temp": 80.0,
        }
        # On the resolution grid, so what the record stores is exactly what was sent.
        rows.append([_on_grid(by_name[ch.name], ch.resolution) for ch in b.channels])
    return birth, rows


def _on_grid(value: float, resolution: float | None) -> float:
    if not resolution:
        return value
    return round(round(value / resolution) * resolution, 9)


def module_ids(n: int) -> list[str]:
    return [f"r{i:04d}" for i in range(n)]


# --- publisher process -----------------------------------------------------------------


def publisher_main(url, line, ids, phases, birth, rows, seconds, conn) -> None:
    """Stand in for the modules ``ids``; ``phases[i]`` is module i's offset in the period
    (s).  Single-threaded paho (publish writes to the socket at once; ``loop`` between
    sends reads and keeps the connection alive)."""
    import paho.mqtt.client as paho

    from host.transport import parse_url
    from protocol import host_messages, messages
    from protocol.topics import module_topic

    host, port, _u, _p = parse_url(url)
    template = host_messages.parse_birth(birth)
    codec = messages.TelemetryCodec(template.channels)
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=f"{line}-pub-{ids[0]}",
        protocol=paho.MQTTv311,
    )
    client.connect(host, port, keepalive=30)
    # One connection carries hundreds of modules here: without TCP_NODELAY, Nagle holds
    # each small write until the previous one is acknowledged, a delay a real module (one
    # connection, one message per 100 ms) never sees.
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    infos = []
    for i, mid in enumerate(ids):
        payload = messages.build_birth(
            mid,
            template.module_kind,
            template.firmware,
            template.config_hash,
            template.reset_cause,
            0,
            (i + 1).to_bytes(8, "big"),
            template.channels,
            template.states,
            template.state,
        )
        infos.append(client.publish(module_topic(line, mid, "birth"), payload, qos=1))
    deadline = time.monotonic() + 30
    while not all(info.is_published() for info in infos):
        if time.monotonic() > deadline:
            raise RuntimeError("publisher: births not acknowledged within 30 s")
        client.loop(timeout=0.01)
    conn.send("ready")
    start_at = conn.recv()  # wall clock (time.time()) at which telemetry starts
    topics = [module_topic(line, mid, "data") for mid in ids]
    order = sorted(range(len(ids)), key=lambda i: phases[i])
    period = 1.0 / RATE_HZ
    ticks = round(seconds * RATE_HZ)
    n_rows = len(rows)
    lags: list[float] = []
    published = 0
    failed = 0
    publish = client.publish
    build = codec.build
    wall = time.time
    while wall() < start_at - 0.05:
        client.loop(timeout=0.02)
    cpu0 = time.process_time()
    for k in range(ticks):
        base = start_at + k * period
        row = rows[k % n_rows]
        for i in order:
            due = base + phases[i]
            now = wall()
            if due - now > 0.002:
                client.loop(timeout=due - now - 0.001)  # wait: read acks, keepalive
                now = wall()
                if now < due:
                    time.sleep(due - now)
                    now = wall()
            lags.append(now - due)
            t_ms = int(now * 1000)
            info = publish(topics[i], build(k & 0xFF, t_ms, row), qos=0)
            if info.rc == paho.MQTT_ERR_SUCCESS:
                published += 1
            else:
                failed += 1
    last = wall()
    # QoS 0 messages leave paho's queue when written to the socket.
    while client.want_write() and wall() - last < 30:
        client.loop_write()
        client.loop(timeout=0.01)
    cpu = time.process_time() - cpu0
    client.disconnect()
    lags.sort()
    conn.send(
        {
            "published": published,
            "failed": failed,
            "cpu_s": cpu,
            "elapsed_s": last - start_at,
            "lag_p99_ms": 1000 * lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
            "lag_max_ms": 1000 * lags[-1] if lags else 0.0,
        }
    )
    conn.poll(60)  # stay alive until the parent has read every process's CPU time


# --- host process -------------------------------------------------------------------------


def connect_subscribed(transport, probe_topic: str, timeout_s: float = 10.0) -> None:
    """Connect ``transport`` and return once the broker applies its subscriptions: a
    message to ourselves on ``probe_topic``, subscribed last, has come back (so nothing
    published afterwards on the earlier subscriptions can be missed)."""
    probed = []
    transport.subscribe(probe_topic, lambda _t, _p: probed.append(1), qos=1)
    transport.connect()
    deadline = time.monotonic() + timeout_s
    while not probed:
        if time.monotonic() > deadline:
            raise RuntimeError(f"subscriptions not active within {timeout_s} s")
        transport.publish(probe_topic, b"", qos=0)
        transport.poll(timeout_s=0.1)


def _host_main(url, line, runs_dir, ready, stop, conn) -> None:
    from host.ingest import Ingest
    from host.record import RunRecord
    from host.registry import Registry
    from host.transport import MqttTransport
    from protocol.topics import line_filter

    wall_ms = lambda: int(time.time() * 1000)  # noqa: E731
    transport = MqttTransport(url, f"{line}-host")
    registry = Registry(line)
    rec = RunRecord.create(
        runs_dir,
        line,
        line_hash="0" * 64,
        recipe_name=None,
        recipe_hash=None,
        config_hashes={},
        metadata={"bench": "ingest"},
        now_ms=wall_ms(),
    )
    ingest = Ingest(registry, rec, wall_ms, flush_every_ms=FLUSH_EVERY_MS, track_module_ms=True)
    clock = [wall_ms()]
    events: dict[str, int] = {}

    def handler(topic: str, payload: bytes) -> None:
        for ev in ingest.handle(topic, payload, clock[0]):
            events[ev.kind] = events.get(ev.kind, 0) + 1

    transport.subscribe(line_filter(line), handler, qos=1)
    connect_subscribed(transport, f"bench/{line}/probe")
    received0 = transport.received
    profile_dir = os.environ.get("FLOWSKID_INGEST_PROFILE")
    profiler = None
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    latencies: list[float] = []
    next_tick = 0
    last_arrival = time.monotonic()
    cpu0 = time.process_time()
    ready.set()
    max_pending = 0  # messages waiting in the transport's queue (host behind)
    max_flush_ms = 0.0
    while True:
        clock[0] = now = wall_ms()
        max_pending = max(max_pending, transport.pending())
        n = transport.poll(max_messages=500, timeout_s=0.002)
        if n:
            last_arrival = time.monotonic()
        if ingest.flush_due(wall_ms()):
            began = time.perf_counter()
            committed = ingest.flush()
            done = time.time() * 1000
            max_flush_ms = max(max_flush_ms, 1000 * (time.perf_counter() - began))
            latencies.extend([done - t for t in committed])
        if now >= next_tick:
            for ev in registry.tick(now):
                events[ev.kind] = events.get(ev.kind, 0) + 1
            next_tick = now + 1000
        if stop.is_set() and time.monotonic() - last_arrival > DRAIN_QUIET_S:
            break
    committed = ingest.flush()
    done = time.time() * 1000
    latencies.extend([done - t for t in committed])
    cpu = time.process_time() - cpu0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(Path(profile_dir) / f"host-{line}.prof"))
    transport.close()
    rec.close()
    latencies.sort()
    conn.send(
        {
            "received": transport.received - received0,
            "dropped": transport.dropped,
            "samples": ingest.samples,
            "flushes": ingest.flushes,
            "max_pending": max_pending,
            "max_flush_ms": max_flush_ms,
            "events": events,
            "malformed": registry.malformed,
            "cpu_s": cpu,
            "latency": _quantiles(latencies),
            "path": str(rec.path),
        }
    )


def _quantiles(sorted_values: list[float]) -> dict:
    if not sorted_values:
        return {"n": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}

    def q(p: float) -> float:
        return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]

    return {"n": len(sorted_values), "p50": q(0.5), "p99": q(0.99), "max": sorted_values[-1]}


# --- peer process -------------------------------------------------------------------------


def _peer_main(url, line, ready, stop, conn) -> None:
    import paho.mqtt.client as paho

    from host.transport import parse_url
    from protocol.topics import line_filter

    host, port, _u, _p = parse_url(url)
    count = [0]
    arrival = [time.monotonic()]

    def on_message(client, userdata, message) -> None:
        count[0] += 1
        arrival[0] = time.monotonic()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(line_filter(line), qos=1)

    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"{line}-peer", protocol=paho.MQTTv5
    )
    client.on_message = on_message
    client.on_connect = on_connect
    acked = [False]
    client.on_subscribe = lambda *a: acked.__setitem__(0, True)
    client.connect(host, port, keepalive=30, clean_start=True)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not acked[0]:
        if time.monotonic() > deadline:
            raise RuntimeError("peer: no SUBACK within 10 s")
        time.sleep(0.01)
    cpu0 = time.process_time()
    ready.set()
    stop.wait()
    while time.monotonic() - arrival[0] <= DRAIN_QUIET_S:
        time.sleep(0.05)
    cpu = time.process_time() - cpu0
    client.disconnect()
    client.loop_stop()
    conn.send({"received": count[0], "cpu_s": cpu})


# --- one step -----------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (every process, ours and others')."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_step(broker, n: int, seconds: float, runs_dir: Path, birth, rows) -> dict:
    """One step: ``n`` modules for ``seconds``; returns what each party measured."""
    import sqlite3

    ctx = multiprocessing.get_context("spawn")
    url = f"mqtt://{broker.host}:{broker.port}"
    line = f"ingest{n}x{int(time.time()) % 100000}"
    ready_host, ready_peer, stop = ctx.Event(), ctx.Event(), ctx.Event()
    host_rx, host_tx = ctx.Pipe(duplex=False)
    peer_rx, peer_tx = ctx.Pipe(duplex=False)
    procs = [
        ctx.Process(target=_host_main, args=(url, line, str(runs_dir), ready_host, stop, host_tx)),
        ctx.Process(target=_peer_main, args=(url, line, ready_peer, stop, peer_tx)),
    ]
    for p in procs:
        p.start()
    for what, ev in (("host", ready_host), ("peer", ready_peer)):
        if not ev.wait(60):
            _stop_all(procs)
            raise RuntimeError(f"bench_ingest: the {what} process did not get ready")
    ids = module_ids(n)
    phases = [i / n / RATE_HZ for i in range(n)]  # spread evenly over the 100 ms period
    pubs = []
    for k in range(PUBLISHERS):
        own = list(range(k, n, PUBLISHERS))
        parent, child = ctx.Pipe()
        p = ctx.Process(
            target=publisher_main,
            args=(
                url,
                line,
                [ids[i] for i in own],
                [phases[i] for i in own],
                birth,
                rows,
                seconds,
                child,
            ),
        )
        p.start()
        pubs.append((p, parent))
    procs += [p for p, _c in pubs]
    for _p, c in pubs:
        if not c.poll(60) or c.recv() != "ready":
            _stop_all(procs)
            raise RuntimeError("bench_ingest: a publisher did not get ready")
    broker_pid = broker._proc.pid  # tests.broker keeps the Popen private
    ours = [broker_pid] + [p.pid for p in procs]
    ours0 = sum(_proc_cpu_s(pid) for pid in ours)
    busy0 = _machine_busy_s()
    broker_cpu0 = _proc_cpu_s(broker_pid)
    start_at = time.time() + 0.5
    for _p, c in pubs:
        c.send(start_at)
    pub_results = []
    for _p, c in pubs:
        if not c.poll(seconds + 120):
            _stop_all(procs)
            raise RuntimeError("bench_ingest: a publisher did not finish")
        pub_results.append(c.recv())
    # Every process is still alive here: what the machine spent beyond ours is other load.
    busy = _machine_busy_s() - busy0
    other_s = max(0.0, busy - (sum(_proc_cpu_s(pid) for pid in ours) - ours0))
    for _p, c in pubs:
        c.send("bye")
    stop.set()
    for rx in (host_rx, peer_rx):
        if not rx.poll(DRAIN_MAX_S + 30):
            _stop_all(procs)
            raise RuntimeError("bench_ingest: the host or peer did not finish draining")
    host = host_rx.recv()
    peer = peer_rx.recv()
    broker_cpu = _proc_cpu_s(broker_pid) - broker_cpu0
    for p in procs:
        p.join(30)
    _stop_all(procs)

    # Count what the record holds, from the file itself.
    conn = sqlite3.connect(f"file:{host['path']}?mode=ro", uri=True)
    try:
        channels = len(rows[0])
        rows_stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        per_module = conn.execute(
            "SELECT count(*) FROM samples WHERE channel = 'temperature' GROUP BY module"
        ).fetchall()
        # Each row's host_ms is the host's clock when the message was handled.
        arrival = [
            float(d)
            for (d,) in conn.execute(
                "SELECT host_ms - module_ms AS d FROM samples WHERE channel = 'temperature' "
                "ORDER BY d"
            )
        ]
    finally:
        conn.close()
    Path(host["path"]).unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(host["path"] + suffix).unlink(missing_ok=True)

    published = sum(r["published"] for r in pub_results)
    pub_cpu = sum(r["cpu_s"] for r in pub_results)
    births = host["events"].get("birth", 0)
    data_received = host["received"] - births
    expected_per_module = round(seconds * RATE_HZ)
    stored = rows_stored // channels
    complete = len(per_module) == n and all(c == expected_per_module for (c,) in per_module)
    elapsed = max(r["elapsed_s"] for r in pub_results)
    lat = host["latency"]
    problems = []
    if births != n:
        problems.append(f"{births} births seen of {n}")
    if published != n * expected_per_module or any(r["failed"] for r in pub_results):
        problems.append(f"published {published} of {n * expected_per_module}")
    if data_received != published:
        problems.append(f"host received {data_received} of {published}")
    if stored != data_received or rows_stored != stored * channels or not complete:
        problems.append(f"stored {stored} samples ({rows_stored} rows) of {data_received}")
    for kind in ("seq_gap", "malformed", "stale"):
        if host["events"].get(kind):
            problems.append(f"{host['events'][kind]} {kind}")
    if host["dropped"]:
        problems.append(f"transport dropped {host['dropped']}")
    if not lat["p99"] <= SUSTAINED_P99_MS:
        problems.append(f"p99 latency {lat['p99']:.0f} ms (not keeping up)")
    if peer["received"] != published + n:
        problems.append(f"peer received {peer['received']} of {published + n}")
    return {
        "modules": n,
        "seconds": seconds,
        "sustained": not problems,
        "problems": problems,
        "published": published,
        "received": data_received,
        "stored": stored,
        "msgs_per_s": published / elapsed if elapsed > 0 else 0.0,
        "latency_ms": lat,
        "arrival_ms": _quantiles(arrival),
        "host_cpu_us": 1e6 * host["cpu_s"] / max(1, host["received"]),
        "host_cpu_share": host["cpu_s"] / elapsed if elapsed > 0 else math.nan,
        "peer_cpu_us": 1e6 * peer["cpu_s"] / max(1, peer["received"]),
        "publisher_cpu_us": 1e6 * pub_cpu / max(1, published),
        "publisher_lag_p99_ms": max(r["lag_p99_ms"] for r in pub_results),
        "broker_cpu_us": 1e6 * broker_cpu / max(1, published),
        "flushes": host["flushes"],
        "host_max_pending": host["max_pending"],
        "host_max_flush_ms": host["max_flush_ms"],
        # Busy CPU of the whole machine while publishing, beyond the bench's processes.
        "other_cores": other_s / elapsed if elapsed > 0 else math.nan,
    }


def _stop_all(procs) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(5)


def _describe(step: dict) -> str:
    lat = step["latency_ms"]
    arr = step["arrival_ms"]
    verdict = "sustained" if step["sustained"] else "NOT sustained: " + "; ".join(step["problems"])
    return (
        f"{step['modules']} modules, {step['msgs_per_s']:.0f} msg/s for {step['seconds']:g} s: "
        f"{verdict}; latency p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
        f"max {lat['max']:.1f} ms (publish-to-handled p50 {arr['p50']:.0f}, "
        f"p99 {arr['p99']:.0f} ms); CPU/msg host {step['host_cpu_us']:.1f} us "
        f"(peer {step['peer_cpu_us']:.1f} us), publishers {step['publisher_cpu_us']:.1f} us, "
        f"broker {step['broker_cpu_us']:.1f} us; host used {100 * step['host_cpu_share']:.0f}% "
        f"of a core; publisher lag p99 {step['publisher_lag_p99_ms']:.1f} ms; "
        f"other load on the machine {step['other_cores']:.2f} cores; host queue max "
        f"{step['host_max_pending']} messages, slowest flush {step['host_max_flush_ms']:.0f} ms"
    )


# --- the benchmark ------------------------------------------------------------------------


def ramp(seconds: float) -> list[dict]:
    """Run the ramp (or FLOWSKID_INGEST_MODULES's steps); every step's measurements."""
    from tests.broker import MosquittoBroker

    birth, rows = reactor_template()
    fixed = _fixed_steps()
    steps: list[dict] = []
    extra = ["set_tcp_nodelay true"] if BROKER_NODELAY else []
    with (
        MosquittoBroker(extra_config=extra) as broker,
        tempfile.TemporaryDirectory(prefix="ingest-") as tmp,
    ):

        def step(n: int) -> dict:
            _log(f"{n} modules for {seconds:g} s ...")
            result = run_step(broker, n, seconds, Path(tmp), birth, rows)
            _log(_describe(result))
            steps.append(result)
            return result

        if fixed is not None:
            for n in fixed:
                step(n)
            return steps
        for n in RAMP_UP:
            if not step(n)["sustained"]:
                break
        if not steps[0]["sustained"]:
            for n in RAMP_DOWN:
                if step(n)["sustained"]:
                    break
    return steps


def records(steps: list[dict]) -> list[dict]:
    sustained = [s for s in steps if s["sustained"]]
    best = max(sustained, key=lambda s: s["modules"]) if sustained else None
    at_target = next((s for s in steps if s["modules"] == TARGET_MODULES), None)
    shown = at_target or best or steps[0]
    n = shown["modules"]
    lat = shown["latency_ms"]
    out = [
        record(
            "ingest.modules_sustained",
            best["modules"] if best else 0,
            f"modules at {RATE_HZ} Hz for {steps[0]['seconds']:g} s, zero loss",
            target=f">={TARGET_MODULES}",
        ),
        record(
            "ingest.msgs_per_s",
            best["msgs_per_s"] if best else 0.0,
            "telemetry msg/s sustained",
            target=f">={TARGET_MODULES * RATE_HZ}",
        ),
        record(
            f"ingest.lost_at_{n}",
            shown["published"] - min(shown["received"], shown["stored"]),
            "messages",
            target="<=0",
        ),
        record(
            f"ingest.p99_ms_at_{n}",
            lat["p99"],
            "ms publish-to-stored",
            target=f"<{TARGET_P99_MS}" if n == TARGET_MODULES else None,
        ),
        record(f"ingest.p50_ms_at_{n}", lat["p50"], "ms publish-to-stored"),
        record(f"ingest.max_ms_at_{n}", lat["max"], "ms publish-to-stored"),
        record(
            f"ingest.host_cpu_us_per_msg_at_{n}",
            shown["host_cpu_us"],
            "us CPU per message",
            peer=PEER,
            peer_value=shown["peer_cpu_us"],
        ),
        record(f"ingest.host_cpu_share_at_{n}", 100 * shown["host_cpu_share"], "% of one core"),
        record(f"ingest.publisher_cpu_us_per_msg_at_{n}", shown["publisher_cpu_us"], "us"),
        record(f"ingest.broker_cpu_us_per_msg_at_{n}", shown["broker_cpu_us"], "us"),
    ]
    if best is not None and best is not shown:
        out.append(
            record(
                f"ingest.p99_ms_at_{best['modules']}",
                best["latency_ms"]["p99"],
                "ms publish-to-stored",
            )
        )
    return out


def run() -> list[dict]:
    return records(ramp(_seconds()))


if __name__ == "__main__":
    for r in run():
        print(r)
