"""RAM probe: one board of any shipped kind booted as edge/boardmain.py boots it.

Used by bench/bench_edge.py (``board_ram_records``) under both MicroPython WebAssembly
builds, with ``machine`` (and, in the WASI build, which has no asyncio, ``asyncio``) from
bench/mpy/stubs.  MicroPython-compatible; never part of a bundle.

``Board.boot`` follows ``edge.boardmain.main`` up to the tick loop: the config from the
board file, hardware through ``machine`` (edge.drivers.machine_io.MachineHardware, so
the real chip drivers are built), a command key (keyed leases and commands, as on a
line), the MQTT link built for a broker that is away (an outage from boot: nothing is
sent, everything queues), the runner, the dead-man timer and the watchdog.  ``run``
ticks it with a signed lease every 10 ticks; ``fill_queues`` fills the link's event and
ack queues to capacity, so the measurement includes a full outage queue.

This module imports nothing at module level: the caller imports the bundle's modules
one by one and measures each; ``boot`` only picks them out of ``sys.modules``.
"""

LINE = "line1"
HOST0 = 1790000000000
NONCE = b"\x01\x02\x03\x04\x05\x06\x07\x08"
KEY = b"flowskid-probe-command-key-32byt"  # 32 bytes
BROKER = "192.168.1.10"  # an address literal: no lookup (edge.boardmain.boot_address)
DETAIL = "over_temperature: coil_temp 160.2 > 150.0 degC"  # a typical trip detail


class Board:
    def __init__(self):
        self.node = None
        self.link = None
        self.runner = None
        self.now = 0
        self.seq = 0
        self.counter = 0
        self.timer = None
        self.module_id = None

    def clock(self):
        return self.now

    def _on_message(self, topic, payload):
        self.runner.on_message(topic, payload)

    def _on_connect(self):
        self.runner.on_connect()

    def _deadman(self, _timer):
        self.node.deadman_check(self.now)

    def boot(self, blob, keyed=True):
        import machine

        from edge.boardmain import reset_cause, timer_id
        from edge.build import build_node
        from edge.compiled_config import load_board_file
        from edge.drivers.machine_io import MachineHardware
        from edge.runner import EdgeRunner
        from edge.session import ModuleSession
        from edge.sink import NullSink

        cfg, chash = load_board_file(blob)
        buses = cfg["buses"]
        hw = MachineHardware(
            buses["spi_pins"], buses["i2c_pins"], buses["spi_baudrate"], buses["i2c_freq"]
        )
        self.keyed = keyed
        node = build_node(
            cfg,
            hw,
            NullSink(),
            0,
            NONCE,
            reset_cause=reset_cause(),
            key=KEY if keyed else None,
            config_hash=chash,
        )
        for _ch, drv in node.sensors:
            invert = getattr(drv, "_invert", None)  # a DigitalIn: read "not asserted"
            if invert is not None:
                drv._pin.value(invert)
        mid = node.module_id
        self.module_id = mid
        watchdog = cfg["watchdog"]
        cfg = None
        session = ModuleSession(node, LINE, self.clock)
        link = session.mqtt_link(BROKER, 1883, mid, username=mid, password="module-password")
        wd = machine.WDT(timeout=watchdog["timeout_ms"]) if watchdog["hardware"] else None
        self.runner = EdgeRunner(node, LINE, self.clock, link=link, watchdog=wd, session=session)
        self.timer = machine.Timer(timer_id())
        period = min(slot.deadman_ms for slot in node.actuators) // 4 or 10
        self.timer.init(period=period, mode=machine.Timer.PERIODIC, callback=self._deadman)
        self.node = node
        self.link = link
        self.runner.on_connect()  # the birth, queued: the broker is away
        self.lease()
        self.command("state", {"command": "start"})

    def lease(self):
        from protocol import auth, messages

        self.seq += 1
        host = HOST0 + self.now
        if self.keyed:
            payload = auth.sign_lease("host", host, self.seq, 3000, [(self.module_id, KEY, NONCE)])
        else:
            payload = messages.build_lease("host", host, self.seq, 3000)
        self.node.handle_lease(payload, self.now)

    def command(self, op, args):
        from protocol import auth, messages

        self.counter += 1
        cmd = messages.build_command(self.counter, op, args, HOST0 + self.now + 5000)
        if self.keyed:
            cmd = auth.sign_command(cmd, KEY, self.module_id, NONCE, "host", self.counter)
        self.node.handle_command(cmd, self.now)

    def run(self, n):
        """``n`` ticks as EdgeRunner.run makes them, with a lease every 10th tick."""
        node = self.node
        runner = self.runner
        step = node.tick_ms
        for i in range(n):
            if i % 10 == 0:
                self.lease()
            self.now += step
            node.tick(self.now)
            if runner.watchdog is not None:
                runner.watchdog.feed()
            if node.rebirth_pending:
                node.birth()

    def fill_queues(self):
        """The outage queues at capacity: typical trip events, and acks."""
        node = self.node
        sink = node.sink
        for _ in range(self.link._events.capacity + 2):
            sink.publish_event(
                node.make_event("trip", "critical", source="probe", cause="probe", detail=DETAIL),
                False,
            )
        for _ in range(self.link._acks.capacity + 2):
            self.command("state", {"command": "start"})  # acked (refused: running)

    def summary(self):
        node = self.node
        stats = self.link.stats
        return "module={} state={} tripped={} events_queued={} acks_queued={} up={}".format(
            node.module_id,
            node.sm.state_name,
            node.interlocks.active,
            stats["events_queued"],
            stats["acks_queued"],
            self.link.is_up,
        )
