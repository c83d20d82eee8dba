"""Command authentication (HMAC-SHA256 tags, replay counters) and command expiry.

A module that holds a key (16-32 bytes, one per module) accepts a command only when its
auth block carries

    tag = HMAC-SHA256(key, cbor([module_id, boot_nonce, sender_id, counter, unsigned]))[:16]

where ``unsigned`` is the encoding of the command without its auth block and
``boot_nonce`` is the nonce of the module's current BIRTH.  The host signs the canonical
encoding (``Command.unsigned_bytes``); in it the auth key (6) is the highest key, so the
signed command is ``unsigned`` with its map head counting one entry more and the auth
entry appended.  The module inverts exactly that on the bytes it RECEIVED
(``_auth_entry_start``): it never re-encodes the parsed command, whose numbers a float32
board holds rounded, and the only byte string it accepts for a tag is the one the key
holder signed (protocol/SPEC.md section 7).  The nonce changes on every
boot, so tags made for an earlier boot are worthless and counters may start again; within
a boot each sender's counter must strictly increase (replay protection).  Hosts should use
a counter that survives their own restarts (e.g. host time in ms): the module remembers the
last counter per sender for as long as it stays up.

LEASEs are authenticated the same way (``sign_lease``, ``CommandVerifier.verify_lease``):
one lease goes to every module of a line, so it carries one tag per keyed module,

    tag = HMAC-SHA256(key, cbor([module_id, boot_nonce, host_id, seq, host_time_ms,
                                 duration_ms]))[:16]

and a keyed module takes a lease only with a valid tag for itself, a ``seq`` above the
last one of that sender and a host time not before that sender's last lease.  (A command's
signing input is a 5-item array, a lease's a 6-item one: a tag of one never verifies as
the other.)

Expiry is judged in host time: ``HostTimeEstimate`` follows the host clock from accepted
LEASEs and never steps back.  Modules check, in this order: parse (MALFORMED),
``CommandVerifier.verify`` (UNAUTHENTICATED / REPLAYED), ``HostTimeEstimate.is_expired``
(EXPIRED), then the op.

MicroPython has no ``hmac`` module, so HMAC (RFC 2104) is built on ``hashlib.sha256``.
Keys never leave this module: nothing here prints, logs or reprs them.
"""

import hashlib

from protocol import cbor
from protocol.constants import (
    RESULT_MALFORMED,
    RESULT_OK,
    RESULT_REPLAYED,
    RESULT_UNAUTHENTICATED,
)
from protocol.messages import (
    Auth,
    Command,
    build_command,
    build_lease,
    parse_command,
)
from protocol.wire import (
    AUTH_TAG_LEN,
    BOOT_NONCE_MAX,
    BOOT_NONCE_MIN,
    K_AUTH,
    T_ID,
    T_INT,
    U64_MAX,
    MessageError,
    check,
)

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


KEY_MIN_LEN = const(16)
KEY_MAX_LEN = const(32)
_BLOCK = const(64)  # SHA-256 block size
# One-byte (canonical) map heads a signed COMMAND may start with: 1..23 entries.
_MAP_HEAD_MIN = const(0xA1)
_MAP_HEAD_MAX = const(0xB7)

# Why verify_lease refused a lease (None: accepted).  Constants: a refusal allocates nothing.
LEASE_NO_TAG = "no tag for this module"
LEASE_BAD_TAG = "invalid tag"
LEASE_REPLAYED = "seq not above the sender's last"
LEASE_BACKWARDS = "host time before the sender's last lease"
LEASE_SENDERS_FULL = "lease sender table full"

# edge/clock.py's tick arithmetic (protocol imports nothing of flowskid): see host_now.
_TICKS_MAX = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)


class AuthError(ValueError):
    """Bad key, nonce or signing input (never contains the key)."""


def _check_key(key):
    if isinstance(key, bytearray):
        key = bytes(key)
    if type(key) is not bytes or not KEY_MIN_LEN <= len(key) <= KEY_MAX_LEN:
        # The message states the length only: a key must not end up in a log.
        n = len(key) if type(key) is bytes else type(key).__name__
        raise AuthError(
            "auth.key: bytes of length {}..{} required, got {}".format(KEY_MIN_LEN, KEY_MAX_LEN, n)
        )
    return key


def _check_nonce(boot_nonce):
    if isinstance(boot_nonce, bytearray):
        boot_nonce = bytes(boot_nonce)
    if type(boot_nonce) is not bytes or not BOOT_NONCE_MIN <= len(boot_nonce) <= BOOT_NONCE_MAX:
        raise AuthError(
            "auth.boot_nonce: {!r} not in bytes of length {}..{}".format(
                boot_nonce, BOOT_NONCE_MIN, BOOT_NONCE_MAX
            )
        )
    return boot_nonce


def _pads(key):
    """Inner and outer padded keys of HMAC (RFC 2104)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    ipad = bytearray(_BLOCK)
    opad = bytearray(_BLOCK)
    for i in range(_BLOCK):
        b = key[i] if i < len(key) else 0
        ipad[i] = b ^ 0x36
        opad[i] = b ^ 0x5C
    return bytes(ipad), bytes(opad)


def _hmac_with_pads(pads, msg, more=None):
    """HMAC of ``msg``, followed by ``more`` if given (hashed in parts: no copy)."""
    inner = hashlib.sha256(pads[0])
    inner.update(msg)
    if more is not None:
        inner.update(more)
    outer = hashlib.sha256(pads[1])
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104) of ``msg`` under ``key`` (any length)."""
    return _hmac_with_pads(_pads(key), msg)


def equal_ct(a, b):
    """Compare two byte strings in time independent of where they differ."""
    if len(a) != len(b):
        return False  # lengths are public (tags are always 16 bytes)
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def _tag_head(module_id, boot_nonce, sender, counter, n):
    """The signing input of a command up to its ``n`` unsigned bytes: the 5-item array's
    head, the first four items and the head of the byte string ``unsigned``.  So the
    input is ``cbor.encode([module_id, boot_nonce, sender, counter, unsigned])`` and the
    verifier hashes ``unsigned`` straight from the received bytes, copying nothing."""
    buf = bytearray(b"\x85")
    cbor.encode_into(buf, module_id)
    cbor.encode_into(buf, boot_nonce)
    cbor.encode_into(buf, sender)
    cbor.encode_into(buf, counter)
    # the head of a byte string of n bytes (RFC 8949 major type 2, shortest form)
    if n < 24:
        buf.append(0x40 | n)
    elif n < 256:
        buf.append(0x58)
        buf.append(n)
    elif n < 65536:  # a COMMAND is at most 8192 bytes (protocol/SPEC.md section 1)
        buf.append(0x59)
        buf.append(n >> 8)
        buf.append(n & 0xFF)
    else:
        raise AuthError("auth.unsigned: {} bytes, at most 65535".format(n))
    return buf


def compute_tag(key, module_id, boot_nonce, sender, counter, unsigned):
    """The 16-byte tag for a command whose unsigned encoding is ``unsigned``."""
    key = _check_key(key)
    head = _tag_head(module_id, boot_nonce, sender, counter, len(unsigned))
    return _hmac_with_pads(_pads(key), head, unsigned)[:AUTH_TAG_LEN]


def _auth_entry_start(data, auth):
    """Where the auth entry of the received COMMAND ``data`` starts (its parsed auth block
    is ``auth``), or 0 when ``data`` is not in the shape a tag covers: a one-byte map head
    of 1..23 entries first, and key 6 with the canonical encoding of ``auth`` last.  Then
    the unsigned bytes are ``head - 1`` followed by ``data[1:start]`` (``start`` bytes).
    The map's entries are not looked at: the tag vouches for them."""
    n = len(data)
    if n == 0 or not _MAP_HEAD_MIN <= data[0] <= _MAP_HEAD_MAX:
        return 0
    entry = bytearray((K_AUTH,))  # key 6: a one-byte uint
    cbor.encode_into(entry, [auth.sender, auth.counter, auth.tag])
    start = n - len(entry)
    if start < 1:
        return 0
    for i in range(len(entry)):
        if data[start + i] != entry[i]:
            return 0
    return start


def sign_command(command, key, module_id, boot_nonce, sender, counter):
    """Host side: return ``command`` (bytes from build_command, or a Command) with an auth
    block for ``module_id`` in its boot identified by ``boot_nonce`` (from its BIRTH).

    ``counter`` must exceed every counter this sender used since the module booted.
    """
    key = _check_key(key)
    boot_nonce = _check_nonce(boot_nonce)
    check("command.module_id", module_id, T_ID)
    check("command.auth.sender", sender, T_ID)
    check("command.auth.counter", counter, T_INT, 0, U64_MAX)
    if not isinstance(command, Command):
        command = parse_command(command)
    unsigned = command.unsigned_bytes()
    tag = compute_tag(key, module_id, boot_nonce, sender, counter, unsigned)
    return build_command(
        command.command_id,
        command.op,
        command.args,
        command.expiry_ms,
        Auth(sender, counter, tag),
    )


def _lease_tag_input(module_id, boot_nonce, sender, seq, host_time_ms, duration_ms):
    return cbor.encode([module_id, boot_nonce, sender, seq, host_time_ms, duration_ms])


def lease_tag(key, module_id, boot_nonce, sender, seq, host_time_ms, duration_ms):
    """The 16-byte tag of a lease for ``module_id`` in its boot ``boot_nonce``."""
    key = _check_key(key)
    data = _lease_tag_input(module_id, boot_nonce, sender, seq, host_time_ms, duration_ms)
    return hmac_sha256(key, data)[:AUTH_TAG_LEN]


def sign_lease(host_id, host_time_ms, seq, duration_ms, signers):
    """Host side: a LEASE carrying a tag for each ``(module_id, key, boot_nonce)`` of
    ``signers`` (keys from the line's key files, nonces from the modules' BIRTHs).  With
    no signers it is an unsigned lease, which only unkeyed modules take.

    ``seq`` must exceed every seq ``host_id`` used since each module booted: hosts use host
    time in ms (never below their last seq + 1), so a restarted host is not refused.
    """
    build_lease(host_id, host_time_ms, seq, duration_ms)  # checks every field first
    tags = {}
    for module_id, key, boot_nonce in signers:
        check("lease.tags key", module_id, T_ID)
        boot_nonce = _check_nonce(boot_nonce)
        tags[module_id] = lease_tag(
            key, module_id, boot_nonce, host_id, seq, host_time_ms, duration_ms
        )
    return build_lease(host_id, host_time_ms, seq, duration_ms, tags or None)


class CommandVerifier:
    """Module side: checks command and lease tags, per-sender command counters and
    per-sender lease seqs and host times, for the current boot.

    The sender tables are bounded (``max_senders`` each): a sender beyond the bound is
    refused rather than evicting another sender, because an evicted sender's counter
    would be forgotten and its old commands (or leases) could then be replayed.
    """

    __slots__ = (
        "module_id",
        "boot_nonce",
        "max_senders",
        "_pads",
        "_senders",
        "_counters",
        "_lease_senders",
        "_lease_seqs",
        "_lease_times",
    )

    def __init__(self, key, module_id, boot_nonce, max_senders=8):
        self._pads = _pads(_check_key(key))
        check("verifier.module_id", module_id, T_ID)
        self.module_id = module_id
        self.boot_nonce = _check_nonce(boot_nonce)
        if type(max_senders) is not int or max_senders < 1:
            raise AuthError("auth.max_senders: {!r} not in 1..".format(max_senders))
        self.max_senders = max_senders
        self._senders = []
        self._counters = []
        self._lease_senders = []
        self._lease_seqs = []
        self._lease_times = []

    def __repr__(self):
        return "CommandVerifier(module_id={!r}, senders={}/{}, key=<hidden>)".format(
            self.module_id, len(self._senders), self.max_senders
        )

    def new_boot(self, boot_nonce):
        """Start a new boot (fresh nonce): old tags die, counters may restart."""
        self.boot_nonce = _check_nonce(boot_nonce)
        self._senders = []
        self._counters = []
        self._lease_senders = []
        self._lease_seqs = []
        self._lease_times = []

    def last_counter(self, sender):
        """Last accepted counter of ``sender`` in this boot, or None."""
        for i in range(len(self._senders)):
            if self._senders[i] == sender:
                return self._counters[i]
        return None

    def verify(self, data, cmd=None):
        """Check the COMMAND ``data``, the bytes as received (``cmd``: their parse, when
        the caller has it already).  RESULT_OK, RESULT_UNAUTHENTICATED (no/bad tag, not in
        the signed shape, sender table full), RESULT_REPLAYED (counter not above the
        sender's last) or RESULT_MALFORMED (``data`` does not parse).  The tag is checked
        over the received bytes, never over a re-encoding of ``cmd``.  Only an accepted
        command advances the sender's counter."""
        if isinstance(data, Command):
            raise TypeError("CommandVerifier.verify: the received bytes, not a Command")
        if cmd is None:
            try:
                cmd = parse_command(data)
            except MessageError:
                return RESULT_MALFORMED
        auth = cmd.auth
        if auth is None:
            return RESULT_UNAUTHENTICATED
        start = _auth_entry_start(data, auth)
        if start == 0:
            return RESULT_UNAUTHENTICATED
        head = _tag_head(self.module_id, self.boot_nonce, auth.sender, auth.counter, start)
        head.append(data[0] - 1)  # the unsigned map head: one entry (auth) fewer
        mac = _hmac_with_pads(self._pads, head, memoryview(data)[1:start])
        if not equal_ct(mac[:AUTH_TAG_LEN], auth.tag):
            return RESULT_UNAUTHENTICATED
        senders = self._senders
        for i in range(len(senders)):
            if senders[i] == auth.sender:
                if auth.counter <= self._counters[i]:
                    return RESULT_REPLAYED
                self._counters[i] = auth.counter
                return RESULT_OK
        if len(senders) >= self.max_senders:
            return RESULT_UNAUTHENTICATED
        senders.append(auth.sender)
        self._counters.append(auth.counter)
        return RESULT_OK

    def verify_lease(self, lease):
        """None when ``lease`` (a parsed Lease) may feed the watchdog and the host-time
        estimate, else why not (a LEASE_* reason): no tag for this module, a wrong tag, a
        seq not above this sender's last (replay), a host time before this sender's last
        lease (its clock went back) or a full sender table.  Only an accepted lease
        advances the sender's seq and host time."""
        tags = lease.tags
        tag = None if tags is None else tags.get(self.module_id)
        if tag is None:
            return LEASE_NO_TAG
        data = _lease_tag_input(
            self.module_id,
            self.boot_nonce,
            lease.host_id,
            lease.seq,
            lease.host_time_ms,
            lease.duration_ms,
        )
        if not equal_ct(_hmac_with_pads(self._pads, data)[:AUTH_TAG_LEN], tag):
            return LEASE_BAD_TAG
        senders = self._lease_senders
        for i in range(len(senders)):
            if senders[i] == lease.host_id:
                if lease.seq <= self._lease_seqs[i]:
                    return LEASE_REPLAYED
                if lease.host_time_ms < self._lease_times[i]:
                    return LEASE_BACKWARDS
                self._lease_seqs[i] = lease.seq
                self._lease_times[i] = lease.host_time_ms
                return None
        if len(senders) >= self.max_senders:
            return LEASE_SENDERS_FULL
        senders.append(lease.host_id)
        self._lease_seqs.append(lease.seq)
        self._lease_times.append(lease.host_time_ms)
        return None


class HostTimeEstimate:
    """Host wall-clock time (ms since the Unix epoch) as seen by a module, from LEASEs.

    ``update`` with each accepted lease's host time and the local tick time of its
    arrival; ``host_now`` extrapolates with the local ticks (wrap-safe).  The estimate lags
    the host by the lease's transit time, so a command looks at most that much younger.

    The estimate never steps back: a lease whose host time is below the current estimate
    (a local clock running fast, transit jitter, a host clock stepped back) holds the
    estimate at its current value until the lease's host time, extrapolated, passes it;
    from then on the estimate follows that lease again.  So a command once judged expired
    stays expired, and a fast local clock gains at most one lease interval's drift
    instead of accumulating it.

    Until a lease arrives, or once the last one is older than ``max_age_ms`` (the local
    clock drifts, and past half the tick period a difference becomes ambiguous), host time
    is unknown and every command counts as expired: a module that cannot tell the time
    cannot tell a fresh command from a stale or replayed-late one, so it refuses.  The
    next lease then sets the estimate afresh.
    """

    __slots__ = ("max_age_ms", "_host_ms", "_local_ms", "_floor_ms")

    def __init__(self, max_age_ms=600000):
        if type(max_age_ms) is not int or not 0 < max_age_ms < _TICKS_HALF:
            raise ValueError(
                "host_time.max_age_ms: {!r} not in 1..{}".format(max_age_ms, _TICKS_HALF - 1)
            )
        self.max_age_ms = max_age_ms
        self._host_ms = None
        self._local_ms = 0
        self._floor_ms = 0

    def update(self, host_time_ms, now_ms):
        """Record a lease: the host's clock read ``host_time_ms`` at local tick ``now_ms``.
        Returns False when that is behind the current estimate (which then holds)."""
        current = self.host_now(now_ms)
        self._host_ms = host_time_ms
        self._local_ms = now_ms
        if current is not None and current > host_time_ms:
            self._floor_ms = current
            return False
        self._floor_ms = host_time_ms
        return True

    def host_now(self, now_ms):
        """Estimated host time at local tick ``now_ms``, or None if unknown."""
        if self._host_ms is None:
            return None
        # ticks_diff(now_ms, self._local_ms), as edge/clock.py computes it
        age = ((now_ms - self._local_ms + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF
        if age < 0 or age > self.max_age_ms:
            return None
        host = self._host_ms + age
        return host if host > self._floor_ms else self._floor_ms

    def is_expired(self, expiry_ms, now_ms):
        """True when host time is past ``expiry_ms`` or unknown (see class doc)."""
        host = self.host_now(now_ms)
        return host is None or host > expiry_ms
