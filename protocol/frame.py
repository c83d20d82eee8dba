"""Serial framing for USB-CDC/UART links: COBS + CRC-16, 0x00-delimited.

Wire layout of one frame (see protocol/SPEC.md, "Serial framing")::

    0x00 | COBS( payload | CRC-16 big-endian ) | 0x00

* CRC is CRC-16/CCITT-FALSE (RevEng catalogue name CRC-16/IBM-3740): width 16,
  poly 0x1021, init 0xFFFF, refin false, refout false, xorout 0x0000,
  check value 0x29B1 for b"123456789".  It covers the payload only.
* COBS (Cheshire & Baker, 1999) removes every 0x00 from the body, so 0x00 only ever
  appears as a delimiter and a receiver can always find the next frame boundary.
* The encoder emits a LEADING delimiter as well as the trailing one.  Line noise that
  contains no 0x00 would otherwise be glued onto the front of the next frame and destroy
  it; with the leading 0x00 that noise is closed off as a garbage frame of its own and
  the real frame that follows is decoded intact.  Two delimiters in a row (an empty
  frame) are idle fill and are ignored without counting an error.
* Payloads are 1..max_payload bytes (default MAX_PAYLOAD = 1024).

MicroPython-compatible; imports only the standard library.
"""

from array import array

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


MAX_PAYLOAD = const(1024)

CRC_POLY = const(0x1021)
CRC_INIT = const(0xFFFF)
CRC_CHECK = const(0x29B1)  # published check value: crc16(b"123456789")
CRC_SIZE = const(2)

DELIMITER = const(0x00)

# Error reasons, used as FrameError.reason and as keys of FrameDecoder.errors.
ERR_CRC = "crc"
ERR_COBS = "cobs"
ERR_OVERFLOW = "overflow"
ERR_EMPTY = "empty"
ERROR_REASONS = (ERR_CRC, ERR_COBS, ERR_OVERFLOW, ERR_EMPTY)

_REASON_TEXT = {
    ERR_CRC: "CRC-16 mismatch (frame corrupted)",
    ERR_COBS: "invalid COBS encoding (a block runs past the end of the frame)",
    ERR_OVERFLOW: "frame longer than max_payload + 2 CRC bytes",
    ERR_EMPTY: "frame too short to hold a payload and its 2-byte CRC",
}


class FrameError(ValueError):
    """A frame or payload was rejected; ``reason`` is one of ERROR_REASONS."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def _build_crc_table():
    # 256 x 16-bit entries in an array("H"): 512 bytes of RAM on a board.
    table = array("H", bytes(512))
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ CRC_POLY) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
        table[i] = crc
    return table


_CRC_TABLE = _build_crc_table()


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE of ``data``; pass a previous result as ``crc`` to continue."""
    table = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ b) & 0xFF]
    return crc


def max_wire_size(max_payload=MAX_PAYLOAD):
    """Worst-case bytes on the wire for one frame, both delimiters included."""
    body = max_payload + CRC_SIZE
    # COBS adds one code byte per started run of up to 254 non-zero bytes.
    return 1 + body + (body + 253) // 254 + 1


def _check_bytes_like(payload):
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(
            "payload must be bytes, bytearray or memoryview, got " + type(payload).__name__
        )


def _cobs_encode_into(sources, dst, pos):
    # Encodes the concatenation of ``sources`` into dst starting at pos; returns the end.
    # A full 254-byte run only opens its successor when another byte arrives, so data
    # ending exactly on a full run gets no trailing 0x01 (matches the published vectors).
    code_pos = pos
    pos += 1
    code = 1
    for src in sources:
        for b in src:
            if code == 0xFF:
                dst[code_pos] = 0xFF
                code_pos = pos
                pos += 1
                code = 1
            if b == 0:
                dst[code_pos] = code
                code_pos = pos
                pos += 1
                code = 1
            else:
                dst[pos] = b
                pos += 1
                code += 1
    dst[code_pos] = code
    return pos


def cobs_encode(data):
    """Plain COBS encoding of ``data`` (no CRC, no delimiters)."""
    _check_bytes_like(data)
    n = len(data)
    dst = bytearray(n + (n + 253) // 254 + 1)
    end = _cobs_encode_into((data,), dst, 0)
    return bytes(memoryview(dst)[:end])


def encode_frame(payload, max_payload=MAX_PAYLOAD):
    """Return ``0x00 COBS(payload + CRC-16 big-endian) 0x00`` ready to write to a serial port."""
    _check_bytes_like(payload)
    n = len(payload)
    if n == 0:
        raise FrameError(
            ERR_EMPTY, "payload is empty; frames carry 1.." + str(max_payload) + " bytes"
        )
    if n > max_payload:
        raise FrameError(
            ERR_OVERFLOW,
            "payload is {} bytes; max_payload is {}".format(n, max_payload),
        )
    crc = crc16(payload)
    dst = bytearray(max_wire_size(n))
    dst[0] = DELIMITER
    end = _cobs_encode_into((payload, bytes((crc >> 8, crc & 0xFF))), dst, 1)
    dst[end] = DELIMITER
    return bytes(memoryview(dst)[: end + 1])


_IDLE = const(0)  # after a delimiter, nothing received yet
_IN_FRAME = const(1)
_DISCARD = const(2)  # overflowed: drop bytes until the next delimiter


class FrameDecoder:
    """Streaming decoder: ``feed(bytes)`` returns the payloads of frames completed by it.

    COBS is decoded on the fly into one preallocated buffer of max_payload + 2 bytes, so
    feeding never allocates beyond the returned list and the payload copies.  It never
    raises on any input bytes: bad frames are dropped and counted in ``errors``
    (keys crc, cobs, overflow, empty) and ``last_error`` names the latest reason.
    Decoding restarts cleanly at every 0x00, so any frame whose leading delimiter is
    received is recovered whatever garbage came before it.
    """

    def __init__(self, max_payload=MAX_PAYLOAD):
        if max_payload < 1:
            raise ValueError("max_payload must be >= 1, got " + str(max_payload))
        self.max_payload = max_payload
        self._cap = max_payload + CRC_SIZE
        self._buf = bytearray(self._cap)
        self.errors = {ERR_CRC: 0, ERR_COBS: 0, ERR_OVERFLOW: 0, ERR_EMPTY: 0}
        self.frames = 0
        self.last_error = None
        self.reset()

    def reset(self):
        """Forget any partial frame (e.g. after reopening the port); counters are kept."""
        self._state = _IDLE
        self._len = 0
        self._remaining = 0  # data bytes left in the current COBS block; 0 = expect a code
        self._pending_zero = False  # the previous block implies a 0x00 if another follows

    def _error(self, reason):
        self.errors[reason] += 1
        self.last_error = reason

    def _finish(self, n, remaining):
        # Returns the payload, or None after counting why the frame was dropped.
        if remaining:
            self._error(ERR_COBS)
            return None
        if n <= CRC_SIZE:
            self._error(ERR_EMPTY)
            return None
        buf = self._buf
        end = n - CRC_SIZE
        mv = memoryview(buf)[:end]
        if crc16(mv) != (buf[end] << 8) | buf[end + 1]:
            self._error(ERR_CRC)
            return None
        self.frames += 1
        return bytes(mv)

    def feed(self, data):
        """Consume ``data`` (any bytes-like); return a list of complete, verified payloads."""
        out = []
        buf = self._buf
        cap = self._cap
        state = self._state
        n = self._len
        remaining = self._remaining
        pending_zero = self._pending_zero
        for b in data:
            if b == DELIMITER:
                if state == _IN_FRAME:
                    payload = self._finish(n, remaining)
                    if payload is not None:
                        out.append(payload)
                state = _IDLE
                n = 0
                remaining = 0
                pending_zero = False
                continue
            if state == _DISCARD:
                continue
            state = _IN_FRAME
            if remaining:
                if n >= cap:
                    self._error(ERR_OVERFLOW)
                    state = _DISCARD
                    continue
                buf[n] = b
                n += 1
                remaining -= 1
            else:  # code byte: b - 1 data bytes follow, then an implied 0x00 if b < 0xFF
                if pending_zero:
                    if n >= cap:
                        self._error(ERR_OVERFLOW)
                        state = _DISCARD
                        continue
                    buf[n] = 0
                    n += 1
                remaining = b - 1
                pending_zero = b != 0xFF
        self._state = state
        self._len = n
        self._remaining = remaining
        self._pending_zero = pending_zero
        return out


def cobs_decode(data):
    """Plain COBS decoding of ``data`` (no CRC, no delimiters); raises FrameError("cobs")."""
    _check_bytes_like(data)
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError(ERR_COBS, "0x00 inside COBS data at offset " + str(i))
        end = i + code
        if end > n:
            raise FrameError(ERR_COBS, "COBS block at offset {} runs past the end".format(i))
        for j in range(i + 1, end):
            if data[j] == 0:
                raise FrameError(ERR_COBS, "0x00 inside COBS data at offset " + str(j))
            out.append(data[j])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def decode_frame(frame, max_payload=MAX_PAYLOAD):
    """Decode one complete frame (delimiters optional); return its payload.

    Raises FrameError whose ``reason`` is crc, cobs, overflow or empty.
    """
    _check_bytes_like(frame)
    start = 0
    end = len(frame)
    if end and frame[0] == DELIMITER:
        start = 1
    if end > start and frame[end - 1] == DELIMITER:
        end -= 1
    body = memoryview(frame)[start:end]
    for i in range(len(body)):
        if body[i] == DELIMITER:
            raise FrameError(ERR_COBS, "0x00 inside frame at body offset " + str(i))
    if not len(body):
        raise FrameError(ERR_EMPTY, _REASON_TEXT[ERR_EMPTY])
    decoder = FrameDecoder(max_payload)
    decoder.feed(body)
    payloads = decoder.feed(b"\x00")
    if payloads:
        return payloads[0]
    reason = decoder.last_error
    reason = reason or ERR_COBS  # always set when a frame was dropped; keeps types exact
    text = _REASON_TEXT[reason]
    if reason == ERR_OVERFLOW:
        text += " (max_payload is " + str(max_payload) + ")"
    raise FrameError(reason, text)
