"""``skid tune --broker URL``: the relay test on a module of a line on an MQTT broker.

``BrokerLink`` is the ``host.tune.Link`` the procedure runs over when the module is real
(or an emulated line's process launched elsewhere: ``--epoch``/``--speed``).  It is a
small host of its own, doing for one module what the coordinator does for a line:

* a ``Registry`` of the line fed by what the modules publish (values from telemetry,
  trips and state changes from events, the birth's boot nonce and config hash);
* commands through a ``Commander`` (signed with the module's key from its board config
  when it has one; ``configure`` answers carry the relay's status in their reason);
* a LEASE every ``LEASE_EVERY_MS`` from ``start_module()`` on, signed for the module (a
  keyed module takes no other), under its own host id and command sender ("tune") so a
  coordinator's replay counters are never touched.  When the link closes the leases
  stop; the module, then at rest, only raises a lease alarm.

Before anything moves (``attach``): the module must be heard (a rebirth is asked for),
announce the kind the line says and the config hash of the board config the test was
planned from (its limits are what keep the test safe), be at rest with ``start``
allowed, and no other host may be leasing the line (a running ``skid run``: two hosts
commanding one module is refused).  Time is the line's clock: real time, or an emulated
line's shared clock (``host.session.SharedClock``); the logic never sleeps itself, it
lets ``clock.advance()`` pass time, so the tests can step an emulation instead.

No emulator here (tests/test_architecture.py): this is the path to real hardware.
"""

from __future__ import annotations

import uuid

from edge.boardconfig import compile_config, load_board_config
from edge.boardconfig.compile import config_hash
from host.commander import Commander
from host.keys import read_key
from host.registry import Registry
from host.tune import Link, TuneError
from line.loader import module_config
from protocol import auth, messages
from protocol.auth import KEY_MAX_LEN, KEY_MIN_LEN
from protocol.topics import host_topic, line_filter

HOST_ID = "tune"  # the lease's host id and the commands' sender
LEASE_EVERY_MS = 1000
LEASE_DURATION_MS = 3000
LISTEN_MS = 2500  # how long attach() listens for another host's lease (leases: every 1 s)
ATTACH_TIMEOUT_MS = 15_000
COMMAND_TIMEOUT_MS = 5000
# States a module may leave only by this test's own doing; entering one mid-test ends it.
ENDED_STATES = ("aborting", "aborted", "stopping", "stopped", "idle", "held", "holding")


def module_key(board_path, insecure: bool) -> bytes | None:
    """The module's command key from its board config (None: unkeyed, or ``insecure``);
    TuneError when the config names one that cannot be used."""
    if insecure:
        return None
    cfg = load_board_config(board_path)
    try:
        key = read_key(board_path, cfg.data["module"].get("key_file"))
    except (OSError, ValueError) as exc:
        raise TuneError(str(exc)) from None
    if key is not None and not KEY_MIN_LEN <= len(key) <= KEY_MAX_LEN:
        raise TuneError(
            f"{board_path}: key file holds {len(key)} bytes, allowed {KEY_MIN_LEN}..{KEY_MAX_LEN}"
        )
    return key


def expected_hash(line, module: str, emulated: bool) -> bytes:
    """The config hash ``module`` must announce: its board config with the line's module
    id, compiled (the emulated form when the line is an emulated one)."""
    if emulated:
        return module_config(line, module)[1]
    cfg = load_board_config(line.modules[module].board)
    cfg.data["module"]["id"] = module
    return config_hash(compile_config(cfg))


class BrokerLink(Link):
    """One module of ``line_id`` over ``transport`` (``host.transport``: MQTT, or the
    in-process bus in tests) on ``clock`` (``now_ms()`` the line's ms, ``host_ms()`` host
    time for expiries and leases, ``advance()`` lets a little time pass)."""

    def __init__(self, transport, line_id: str, module: str, kind: str, clock, key=None):
        self.transport = transport
        self.line_id = line_id
        self.module = module
        self.kind = kind
        self.clock = clock
        self.key = key
        self.registry = Registry(line_id, {module: (kind, None)})
        self.commander = Commander(
            transport,
            line_id,
            self.registry,
            {module: key} if key is not None else {},
            sender=HOST_ID,
            host_ms=clock.host_ms,
        )
        self.leasing = False
        self.foreign_leases: set[str] = set()
        self._lease_seq = 0
        self._next_lease = 0
        self._trips: list[str] = []
        self._lost: str | None = None
        self._started = False
        transport.subscribe(line_filter(line_id), self._on_line_message)
        transport.subscribe(host_topic(line_id, "lease"), self._on_lease)

    # -- what arrives ---------------------------------------------------------------------

    def _on_line_message(self, topic: str, payload: bytes) -> None:
        for ev in self.registry.on_message(topic, payload, self.clock.now_ms()):
            if ev.module != self.module:
                continue
            if ev.kind == "trip" and self._started:
                self._trips.append(ev.message.cause or "trip")
            elif ev.kind == "birth":
                if self._started and ev.data.get("reboot"):
                    self._lost = f"{self.module} rebooted during the test (its outputs are safe)"
            elif ev.kind in ("death", "stale") and self._started:
                self._lost = f"{self.module} went offline ({ev.data.get('reason', ev.kind)})"
            elif ev.kind == "state" and self._started and ev.message.state in ENDED_STATES:
                self._lost = self._lost or (
                    f"{self.module} left the test: state {ev.message.state} (not by skid tune)"
                )

    def _on_lease(self, _topic: str, payload: bytes) -> None:
        try:
            lease = messages.parse_lease(payload)
        except ValueError:
            return
        if lease.host_id != HOST_ID:
            self.foreign_leases.add(lease.host_id)
            if self._started and self._lost is None:
                self._lost = f"another host ({lease.host_id}) leases line {self.line_id} now"

    # -- time ------------------------------------------------------------------------------

    def _turn(self) -> None:
        """Let a little time pass: deliver what arrived, lease when due, time out acks,
        ask for the births the registry lost track of."""
        self.clock.advance()
        now = self.clock.now_ms()
        self.transport.poll()
        self.registry.tick(now)
        self._watch_silence()
        if self.leasing and now >= self._next_lease:
            self._lease()
            self._next_lease = now + LEASE_EVERY_MS
        self.commander.tick(now)
        for mid in self.registry.rebirth_needed():
            if mid == self.module:
                try:
                    self.commander.send(mid, "rebirth", None, now_ms=now)
                except ValueError:
                    pass  # not heard from yet: asked again once it is

    def _watch_silence(self) -> None:
        view = self.registry.modules.get(self.module)
        if self._started and view is not None and view.stale and self._lost is None:
            self._lost = f"{self.module} went silent (no telemetry)"

    def _lease(self) -> None:
        host_now = int(self.clock.host_ms())
        self._lease_seq = max(self._lease_seq + 1, host_now)
        view = self.registry.modules.get(self.module)
        signers = []
        if self.key is not None and view is not None and view.boot_nonce is not None:
            signers.append((self.module, self.key, view.boot_nonce))
        data = auth.sign_lease(HOST_ID, host_now, self._lease_seq, LEASE_DURATION_MS, signers)
        self.transport.publish(host_topic(self.line_id, "lease"), data, qos=0)

    def _wait(self, ms: int, until=None) -> bool:
        end = self.clock.now_ms() + ms
        while self.clock.now_ms() < end:
            if until is not None and until():
                return True
            self._turn()
        return until() if until is not None else True

    # -- before the test -------------------------------------------------------------------

    def attach(self, expected: bytes | None) -> None:
        """Hear the module's birth and check it (kind, config hash ``expected``, at rest,
        ``start`` allowed) and that no other host leases the line; TuneError says what is
        wrong (nothing was sent but a rebirth request)."""
        view = self.hear()
        self._wait(LISTEN_MS)
        if self.foreign_leases:
            hosts = ", ".join(sorted(self.foreign_leases))
            raise TuneError(
                f"another host leases line {self.line_id} ({hosts}): a recipe is running; "
                "tune with the line otherwise idle"
            )
        if view.kind != self.kind:
            raise TuneError(f"{self.module} is a {view.kind}, the line says {self.kind}")
        if expected is not None and view.config_hash != expected:
            raise TuneError(
                f"{self.module} runs config hash {(view.config_hash or b'').hex()}, its board "
                f"config compiles to {expected.hex()}: the test is planned from that file's "
                "limits; flash it (or name the right file in the line) first"
            )
        if "start" not in (view.states.get(view.state or "", ()) or ()):
            raise TuneError(
                f"{self.module} is {view.state}, where it cannot be started: bring it to rest "
                "(idle; reset a latched trip) first"
            )

    def hear(self, timeout_ms: int = ATTACH_TIMEOUT_MS):
        """Wait for the module's birth (asking for one); its ``ModuleView``, else TuneError."""
        if not self._wait(timeout_ms, self._born):
            raise TuneError(
                f"{self.module} not heard on line {self.line_id} within "
                f"{timeout_ms / 1000:g} s (line id? is the module powered and connected?)"
            )
        return self.registry.modules[self.module]

    def _born(self) -> bool:
        # Births are not retained: a module heard (telemetry) without one is asked for a
        # rebirth by the registry (``_turn``).
        view = self.registry.modules.get(self.module)
        return view is not None and view.born and view.online

    def start_module(self) -> None:
        """Lease the module and start it (after the operator's authorisation)."""
        self.leasing = True
        self._wait(2 * LEASE_EVERY_MS)  # the module's lease watchdog armed first
        ok, reason = self.command("state", {"command": "start"})
        if not ok:
            raise TuneError(f"{self.module} refused to start: {reason}")
        self._started = True
        self.advance(1.0)

    # -- host.tune.Link ---------------------------------------------------------------------

    def now_s(self) -> float:
        return self.clock.now_ms() / 1000.0

    def advance(self, seconds: float) -> None:
        self._wait(int(seconds * 1000))

    def value(self, channel: str) -> float | None:
        return self.registry.value(self.module, channel)

    def command(self, op: str, args: dict) -> tuple[bool, str]:
        try:
            pending = self.commander.send(
                self.module, op, args, now_ms=self.clock.now_ms(), timeout_ms=COMMAND_TIMEOUT_MS
            )
        except ValueError as exc:
            return False, str(exc)
        self._wait(COMMAND_TIMEOUT_MS + 1000, lambda: pending.done)
        if not pending.done:
            return False, "no ack"
        return pending.ok, pending.reason or (pending.result or "")

    def set_setpoint(self, channel: str, value: float) -> tuple[bool, str]:
        return self.command("set_setpoint", {"channel": channel, "value": value})

    def trip(self) -> str | None:
        return self._trips[0] if self._trips else None

    def lost(self) -> str | None:
        return None if self._trips else self._lost

    def close(self) -> None:
        """Stop leasing and leave the broker."""
        self.leasing = False
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001, S110 - leaving anyway
            pass


def client_id(line_id: str) -> str:
    return f"{line_id}-tune-{uuid.uuid4().hex[:6]}"
