"""An emulated module as its own MicroPython process (the Unix port), in a broker-mode line.

    micropython -m edge.emulated_main DIR

``DIR`` holds what the host wrote for this module (``host.micropython_unix``):
``config.bin`` (the board file of the module's emulated config, as ``skid bundle`` writes
it) and ``module.cbor``, a CBOR map: ``broker_host``, ``broker_port``, ``line``, ``epoch`` (Unix
seconds), ``speed``, ``client_id`` and optionally ``username``, ``password`` and
``key_hex`` (the command key; never on the command line, where ``ps`` would show it).

What runs is the board's own code: the node built from the board file, ``EdgeRunner``,
``MqttLink`` over MicroPython's sockets and asyncio.  In place of hardware, the emulated
drivers are fed by ``edge.plantport.PlantPort`` over a second ``MqttLink`` to the plant
emulator process; its will (an empty outputs message) tells the plant the module lost
power.  Time is the line's shared simulated clock: ``(time.time() - epoch) * speed`` in
ms, masked like board ticks, so ``--speed`` other than 1 works as it does on CPython.

Differences from a board, and why: there is no hardware timer or watchdog on the Unix
port, so the dead-man check runs as its own asyncio task (a stalled tick loop would stall
it too: on a board it is a timer interrupt); the broker address is used as given (the
host passes an address, never a name to resolve).

Stop: a clean stop is asked for by closing the process's standard input (the launcher
does): the node goes safe, DEATH is published, then the plant hears "no power".  A kill
(SIGKILL, a power-loss fault) leaves both wills to the broker.
"""

import asyncio
import os
import sys
import time

from edge.build import build_node
from edge.clock import shared_ms, ticks_wrap
from edge.compiled_config import load_board_file
from edge.link.client import MqttLink
from edge.plantport import PlantPort
from edge.runner import EdgeRunner, deadman_check_period_ms
from edge.session import ModuleSession
from edge.sink import NullSink
from protocol.cbor import decode

PLANT_WAIT_POLL_MS = 10
SETTINGS_FILE = "module.cbor"


class SharedClock:
    """Simulated ms since the line's epoch, at ``speed`` times real time."""

    def __init__(self, epoch, speed):
        self.epoch = epoch
        self.speed = speed

    def __call__(self):
        return ticks_wrap(shared_ms(time.time(), self.epoch, self.speed))

    async def sleep_ms(self, ms):
        await asyncio.sleep_ms(int(max(0, ms) / self.speed))


def read_settings(directory):
    with open(directory + "/" + SETTINGS_FILE, "rb") as f:
        settings = decode(f.read())
    with open(directory + "/config.bin", "rb") as f:
        cfg, chash = load_board_file(f.read())
    return settings, cfg, chash


class EmulatedModule:
    """The node, its link, its plant port and their tasks."""

    def __init__(self, settings, cfg, chash):
        self.clock = SharedClock(settings["epoch"], settings["speed"])
        key_hex = settings.get("key_hex")
        line = settings["line"]
        self.node = build_node(
            cfg,
            None,
            NullSink(),
            self.clock(),
            os.urandom(8),
            key=bytes.fromhex(key_hex) if key_hex else None,
            config_hash=chash,
        )
        module_id = self.node.module_id
        host, port = settings["broker_host"], settings["broker_port"]
        self.session = ModuleSession(self.node, line, self.clock)
        self.link = self.session.mqtt_link(
            host,
            port,
            settings["client_id"],
            username=settings.get("username"),
            password=settings.get("password"),
        )
        self.plant = PlantPort(self.node, line, self._publish_plant)
        self.plant_link = MqttLink(
            host,
            port,
            "skidsim-" + line + "-" + module_id,
            self.plant.outputs_topic,
            b"",  # the will: "no power"
            [(self.plant.sensors_topic, 0)],
            on_message=self._plant_message,
            on_connect=self._plant_connected,
            username=settings.get("username"),
            password=settings.get("password"),
        )
        self.runner = EdgeRunner(
            self.node,
            line,
            self.clock,
            sleep_ms=self.clock.sleep_ms,
            link=self.link,
            before_tick=self.plant.step,
            after_tick=self.plant.after_tick,
            session=self.session,
        )
        self.stopping = False

    def _publish_plant(self, topic, payload):
        self.plant_link.publish_telemetry(topic, payload)

    def _plant_message(self, topic, payload):
        if topic == self.plant.sensors_topic or topic == self.plant.sensors_topic.encode():
            self.plant.on_sensors(payload)

    def _plant_connected(self):
        # Power on: the plant (re)binds a module when it hears its outputs.
        self.plant.send_outputs(self.plant.last_step_ms, force=True)

    def stop(self):
        self.stopping = True
        self.runner.stop()

    async def deadman(self):
        period = deadman_check_period_ms(self.node)
        while not self.stopping:
            await self.clock.sleep_ms(max(period, 5))
            self.node.deadman_check(self.clock())

    async def watch_stdin(self):
        """A clean stop when standard input closes (the launcher's stop)."""
        reader = asyncio.StreamReader(sys.stdin)
        while not self.stopping:
            data = await reader.read(64)
            if not data:
                self.stop()
                return

    async def await_plant(self):
        """Tick only once the plant's first readings came (a board's sensors are there at
        power-on; ticking on empty drivers would trip)."""
        while not self.plant.has_sensors and not self.stopping:
            await asyncio.sleep_ms(PLANT_WAIT_POLL_MS)
        self.plant.step(self.clock())

    async def run(self):
        plant_task = asyncio.create_task(self.plant_link.run())
        stdin_task = asyncio.create_task(self.watch_stdin())
        await self.await_plant()
        link_task = asyncio.create_task(self.link.run())
        deadman_task = asyncio.create_task(self.deadman()) if self.node.actuators else None
        print("running", self.node.module_id)
        try:
            await self.runner.run()
        finally:
            self.stopping = True
            self.node.shutdown()
            await self.link.close(self.node.death())
            self.plant.send_outputs(self.clock(), force=True)  # the safe values, then off
            await self.plant_link.close()
            for task in (link_task, plant_task, stdin_task, deadman_task):
                if task is not None:
                    task.cancel()
            self.print_stats()

    def print_stats(self):
        """Tick statistics at the end, as ``skid edge`` prints them (simulated ms)."""
        r = self.runner
        print(
            "stopped {}: ticks {} overruns {} max_late_ms {} plant_late_steps {}".format(
                self.node.module_id, r.ticks, r.overruns, r.max_lateness_ms, self.plant.late_steps
            )
        )


def main(argv=None):
    argv = sys.argv if argv is None else argv
    if len(argv) < 2:
        print("usage: micropython -m edge.emulated_main DIR")
        sys.exit(2)
    settings, cfg, chash = read_settings(argv[1])
    module = EmulatedModule(settings, cfg, chash)
    cfg = None
    asyncio.run(module.run())


if __name__ == "__main__":
    main()
