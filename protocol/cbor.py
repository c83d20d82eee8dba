"""Pure-Python CBOR (RFC 8949) codec for the flowskid wire protocol.

Runs unchanged on CPython and MicroPython and imports nothing else of flowskid.

Encoding (``encode``, ``encode_into``) follows the preferred serialisation of RFC 8949
§4.2.1: shortest argument heads, definite lengths only, floats in the shortest of
half/single/double that holds the value exactly (every NaN becomes ``f97e00``, so NaN
payloads are not kept), and map entries in bytewise lexicographic order of their encoded
keys.  Two keys that encode to the same bytes (two NaN keys, say) raise ``EncodeError``.
Supported: None, bool, int in [-2**64, 2**64 - 1], float, bytes, bytearray, str, list,
tuple (as an array), dict, ``Tag``, ``Simple``, ``UNDEFINED`` and ``Float32``.
Containers nested deeper than 32 levels (or cyclic) raise ``EncodeError``.

``Float32(x)`` asks for a measured value to be sent as a single (or half, when exact)
float instead of a double.  The value on the wire is ``x`` rounded to single precision:
it differs from ``x`` by at most a relative 2**-24.  Boards that compute in single
precision (rp2, ESP32) lose nothing; a double-precision host reading the value gets the
float32 number, not the double it started from.

Decoding (``decode``) accepts every well-formed CBOR item, including indefinite-length
strings, arrays and maps and non-preferred (longer than needed) heads.  Tags 2 and 3
(bignums) become ``int``; other tags become ``Tag``; undefined becomes ``UNDEFINED`` and
the unassigned simple values ``Simple``.  It raises ``DecodeError`` (a ``ValueError``
with ``.offset``, the byte offset of the problem, and ``.reason``) for: input ending
inside an item, reserved additional information 28-30, a break outside an indefinite
container, indefinite length on major types 0, 1 and 6, chunks of an indefinite string
that are of another type or themselves indefinite, invalid UTF-8, bytes after the
top-level item, two-byte simple values below 32, a declared length larger than the
input left (checked before anything is allocated), a message longer than ``max_size``,
bignum tags whose content is not a byte string, and map keys that Python cannot hold:
unhashable keys (arrays, maps) and duplicate keys.  Duplicates are judged by Python
equality, so ``1``, ``1.0`` and ``true`` in one map count as duplicates (and so do two
NaN keys).

Nesting: every array, map and tag is one level; ``max_depth`` levels decode (default
16: sixteen nested arrays decode, seventeen raise).  Tags count because a chain of tags
recurses like a container, and the bound is what keeps the C stack of a small board
safe.  For input that ends too early the offset is the input's length.

Portability: where ``struct`` lacks the half-float format 'e' a manual conversion is
used; where ``bytes.decode()`` accepts overlong forms, surrogates or code points above
U+10FFFF (MicroPython does) non-ASCII text is also checked by a validator here.
"""

import math
import struct

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


_MAX_ENCODE_DEPTH = const(32)
_UINT64_LIMIT = 18446744073709551616  # 2**64: too big for const() on small ports

_pack = struct.pack
_unpack_from = struct.unpack_from


class DecodeError(ValueError):
    """Malformed or unacceptable CBOR input; ``offset`` is where the problem is."""

    def __init__(self, offset, reason):
        super().__init__("CBOR decode error at byte {}: {}".format(offset, reason))
        self.offset = offset
        self.reason = reason


class EncodeError(ValueError):
    """A value that this codec cannot put on the wire."""


class Tag:
    """A tagged data item (major type 6) other than the bignum tags 2 and 3."""

    def __init__(self, tag, value):
        if type(tag) is not int or tag < 0 or tag >= _UINT64_LIMIT:
            raise ValueError("Tag number must be an int in 0..2**64-1, got {!r}".format(tag))
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return type(other) is Tag and self.tag == other.tag and self.value == other.value

    def __hash__(self):
        return hash((self.tag, self.value))

    def __repr__(self):
        return "Tag({}, {!r})".format(self.tag, self.value)


class Simple:
    """An unassigned simple value: 0..19 or 32..255 (20..23 are false/true/null/undefined)."""

    def __init__(self, value):
        if type(value) is not int or not (0 <= value <= 19 or 32 <= value <= 255):
            raise ValueError("simple value must be in 0..19 or 32..255, got {!r}".format(value))
        self.value = value

    def __eq__(self, other):
        return type(other) is Simple and self.value == other.value

    def __hash__(self):
        return hash(("simple", self.value))

    def __repr__(self):
        return "Simple({})".format(self.value)


class _Undefined:
    def __repr__(self):
        return "UNDEFINED"

    def __bool__(self):
        return False


UNDEFINED = _Undefined()


class Float32:
    """A float to be encoded in single precision (half when that is exact).

    ``value`` is the argument as given; the wire carries it rounded to single
    precision (relative error at most 2**-24; beyond the float32 range it becomes inf).
    """

    def __init__(self, value):
        self.value = float(value)

    def __eq__(self, other):
        return type(other) is Float32 and self.value == other.value

    def __hash__(self):
        return hash(("float32", self.value))

    def __repr__(self):
        return "Float32({!r})".format(self.value)


# --- platform feature detection (MicroPython ports differ) -------------------------------

# What unpack_from raises on a buffer too short: CPython struct.error; MicroPython has no
# struct.error and raises ValueError("buffer too small").
_StructError = getattr(struct, "error", ValueError)

try:
    _pack(">e", 1.5)
    _HAS_HALF = True
except _StructError:  # some MicroPython ports lack the 'e' format
    _HAS_HALF = False

try:
    _pack_BB = struct.Struct(">BB").pack  # pyright: ignore[reportAssignmentType]
    _pack_BH = struct.Struct(">BH").pack  # pyright: ignore[reportAssignmentType]
    _pack_BI = struct.Struct(">BI").pack  # pyright: ignore[reportAssignmentType]
    _pack_BQ = struct.Struct(">BQ").pack  # pyright: ignore[reportAssignmentType]
except AttributeError:  # MicroPython: no struct.Struct

    def _pack_BB(a, b):
        return _pack(">BB", a, b)

    def _pack_BH(a, b):
        return _pack(">BH", a, b)

    def _pack_BI(a, b):
        return _pack(">BI", a, b)

    def _pack_BQ(a, b):
        return _pack(">BQ", a, b)


try:
    _pack_f = struct.Struct(">f").pack  # pyright: ignore[reportAssignmentType]
    _unpack_f = struct.Struct(">f").unpack_from  # pyright: ignore[reportAssignmentType]
    _unpack_I = struct.Struct(">I").unpack_from  # pyright: ignore[reportAssignmentType]
except AttributeError:  # MicroPython: no struct.Struct

    def _pack_f(v):
        return _pack(">f", v)

    def _unpack_f(data, i):
        return _unpack_from(">f", data, i)

    def _unpack_I(data, i):
        return _unpack_from(">I", data, i)


def _utf8_decode_is_strict():
    # MicroPython's bytes.decode() accepts overlong forms, surrogates and code points
    # above U+10FFFF; CPython rejects all of them.
    for sample in (b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\x80"):
        try:
            sample.decode("utf-8")
            return False
        except UnicodeError:
            pass
    return True


_STRICT_UTF8 = _utf8_decode_is_strict()

_INF = float("inf")
_FLOAT32_MAX = 3.4028234663852886e38


# --- half-precision conversion without struct 'e' ---------------------------------------


def _half_bits(v):
    """Bits of ``v`` as an IEEE half, or -1 if not exactly representable (finite ``v``)."""
    sign = 0x8000 if math.copysign(1.0, v) < 0 else 0
    a = -v if sign else v
    if a >= 6.103515625e-05:  # 2**-14, smallest normal half
        m, e = math.frexp(a)  # a = m * 2**e, 0.5 <= m < 1
        e -= 1
        if e > 15:
            return -1
        frac = (m * 2.0 - 1.0) * 1024.0
        if frac != int(frac):
            return -1
        return sign | ((e + 15) << 10) | int(frac)
    k = a * 16777216.0  # subnormal: a multiple of 2**-24 (scaling by 2**24 is exact)
    if k != int(k):
        return -1
    return sign | int(k)


def _half_value(h):
    e = (h >> 10) & 31
    f = h & 1023
    if e == 0:
        v = math.ldexp(f, -24)
    elif e == 31:
        v = _INF if f == 0 else float("nan")
    else:
        v = math.ldexp(f + 1024, e - 25)
    return -v if h & 0x8000 else v


def _unpack_half(data, i):
    """``struct.unpack_from(">e", data, i)`` for ports whose struct lacks 'e'."""
    return (_half_value((data[i] << 8) | data[i + 1]),)


if not _HAS_HALF:
    _unpack_e = _unpack_half
    _pack_e = None  # pyright: ignore[reportAssignmentType]  # unused without half support
else:
    try:
        _pack_e = struct.Struct(">e").pack  # pyright: ignore[reportAssignmentType]
        _unpack_e = struct.Struct(">e").unpack_from  # pyright: ignore[reportAssignmentType]
    except AttributeError:  # MicroPython: no struct.Struct

        def _pack_e(v):
            return _pack(">e", v)

        def _unpack_e(data, i):
            return _unpack_from(">e", data, i)


# --- encoder -------------------------------------------------------------------------------


def _head(buf, major, n):
    """Append a head with major type ``major`` (already shifted: 0x00, 0x20, ...)."""
    if n < 24:
        buf.append(major | n)
    elif n < 256:
        buf += _pack_BB(major | 24, n)
    elif n < 65536:
        buf += _pack_BH(major | 25, n)
    elif n < 4294967296:
        buf += _pack_BI(major | 26, n)
    else:
        buf += _pack_BQ(major | 27, n)


def _enc_int(buf, v):
    if v >= 0:
        if v >= _UINT64_LIMIT:
            raise EncodeError("int {} out of range: CBOR ints are -2**64..2**64-1".format(v))
        _head(buf, 0x00, v)
    else:
        v = -1 - v
        if v >= _UINT64_LIMIT:
            raise EncodeError("int {} out of range: CBOR ints are -2**64..2**64-1".format(-1 - v))
        _head(buf, 0x20, v)


def _enc_float(buf, v, allow_double):
    if v != v:
        buf += b"\xf9\x7e\x00"
        return
    if allow_double:
        if not -_FLOAT32_MAX <= v <= _FLOAT32_MAX:
            if v == _INF:
                buf += b"\xf9\x7c\x00"
            elif v == -_INF:
                buf += b"\xf9\xfc\x00"
            else:
                buf += b"\xfb"
                buf += _pack(">d", v)
            return
        single = _pack_f(v)
        s = _unpack_f(single, 0)[0]
        if s != v:
            buf += b"\xfb"
            buf += _pack(">d", v)
            return
    else:
        try:
            single = _pack_f(v)
        except OverflowError:  # CPython refuses to round to infinity; MicroPython rounds
            single = _pack_f(_INF if v > 0 else -_INF)
        s = _unpack_f(single, 0)[0]
    # ``s`` is the value to send and fits a single exactly: use half if that is exact
    if -65504.0 <= s <= 65504.0:
        if _HAS_HALF:
            half = _pack_e(s)
            if _unpack_e(half, 0)[0] == s:
                buf += b"\xf9"
                buf += half
                return
        else:
            h = _half_bits(s)
            if h >= 0:
                buf += _pack_BH(0xF9, h)
                return
    elif s == _INF:
        buf += b"\xf9\x7c\x00"
        return
    elif s == -_INF:
        buf += b"\xf9\xfc\x00"
        return
    buf += b"\xfa"
    buf += single


def _first(pair):
    return pair[0]


def _enc_map_sorted(buf, obj, depth):
    """General map path: sort entries by their encoded keys (RFC 8949 §4.2.1)."""
    entries = []
    for k, x in obj.items():
        kb = bytearray()
        _enc(kb, k, depth)
        entries.append((bytes(kb), x))
    entries.sort(key=_first)
    prev = None
    for kb, x in entries:
        if kb == prev:
            raise EncodeError("two map keys encode to the same bytes {}".format(kb))
        prev = kb
        buf += kb
        _enc(buf, x, depth)


def _enc_map(buf, v, depth, type=type, int=int, _pack_BI=_pack_BI):
    # Ints inside maps and arrays are encoded inline (the two copies, here and in
    # _enc_array, are deliberate): they are nearly every item of telemetry and a call per
    # int would cost about a third of the encode time.
    if depth >= _MAX_ENCODE_DEPTH:
        raise EncodeError("containers nested deeper than {} (or cyclic)".format(depth))
    depth += 1
    n = len(v)
    if n < 24:
        buf.append(0xA0 | n)
    else:
        _head(buf, 0xA0, n)
    start = len(buf)
    # Fast path: keys are non-negative ints already in ascending order (how message
    # builders produce them); their encoded order is then their numeric order.
    prev = -1
    append = buf.append
    for k, x in v.items():
        if type(k) is not int or k <= prev:
            break
        prev = k
        if k < 24:
            append(k)
        else:
            _enc_int(buf, k)
        if type(x) is int and 0 <= x:
            if x < 24:
                append(x)
            elif x < 256:
                append(24)
                append(x)
            elif x < 65536:
                append(25)
                append(x >> 8)
                append(x & 255)
            elif x < 4294967296:
                buf += _pack_BI(26, x)
            else:
                _enc_int(buf, x)
        elif type(x) is list:  # telemetry's values: one call fewer than through _enc
            _enc_array(buf, x, depth)
        else:
            _enc(buf, x, depth)
    else:
        return
    buf[start:] = b""  # MicroPython bytearrays lack item deletion
    _enc_map_sorted(buf, v, depth)


def _enc_array(
    buf,
    v,
    depth,
    type=type,
    int=int,
    Float32=Float32,
    _pack_BI=_pack_BI,
    pack_f=_pack_f,
    pack_e=_pack_e,
    unpack_e=_unpack_e,
):
    if depth >= _MAX_ENCODE_DEPTH:
        raise EncodeError("containers nested deeper than {} (or cyclic)".format(depth))
    depth += 1
    n = len(v)
    if n < 24:
        buf.append(0x80 | n)
    else:
        _head(buf, 0x80, n)
    append = buf.append
    for x in v:
        if type(x) is int and 0 <= x:
            if x < 24:
                append(x)
            elif x < 256:
                append(24)
                append(x)
            elif x < 65536:
                append(25)
                append(x >> 8)
                append(x & 255)
            elif x < 4294967296:
                buf += _pack_BI(26, x)
            else:
                _enc_int(buf, x)
        elif type(x) is Float32:
            # A float channel's value.  A single whose low 13 bits are not all 0 is
            # neither a half (10 fraction bits to a single's 23) nor infinity: send it
            # as is.  The rest (halves, 0, inf, NaN, overflow) take the general path.
            f = x.value
            try:
                single = pack_f(f)
            except OverflowError:  # CPython refuses to round to infinity
                single = b"\x00\x00\x00\x00"
            if (single[3] or single[2] & 31) and f == f:
                append(0xFA)
                buf += single
                continue
            if _HAS_HALF and -65504.0 <= f <= 65504.0:
                half = pack_e(f)
                if unpack_e(half, 0)[0] == f:  # f is exactly a half
                    append(0xF9)
                    buf += half
                    continue
            _enc_float(buf, f, False)
        else:
            _enc(buf, x, depth)


def _enc(
    buf, v, depth, type=type, int=int, dict=dict, list=list, tuple=tuple, float=float, str=str
):
    # Builtins are bound as default arguments: on MicroPython a builtin name is looked up
    # in two dicts and a local is an array slot; this nearly halves encode time there.
    # Checks are ordered by how often each type reaches here in protocol messages.
    t = type(v)
    if t is dict:
        _enc_map(buf, v, depth)
    elif t is list or t is tuple:
        _enc_array(buf, v, depth)
    elif t is int:
        if 0 <= v < 24:
            buf.append(v)
        else:
            _enc_int(buf, v)
    elif t is float:
        _enc_float(buf, v, True)
    elif t is Float32:
        _enc_float(buf, v.value, False)
    elif t is str:
        b = v.encode("utf-8")
        _head(buf, 0x60, len(b))
        buf += b
    elif t is bool:
        buf.append(0xF5 if v else 0xF4)
    elif v is None:
        buf.append(0xF6)
    elif t is bytes or t is bytearray:
        _head(buf, 0x40, len(v))
        buf += v
    elif t is Tag:
        if depth >= _MAX_ENCODE_DEPTH:
            raise EncodeError("containers nested deeper than {} (or cyclic)".format(depth))
        _head(buf, 0xC0, v.tag)
        _enc(buf, v.value, depth + 1)
    elif t is Simple:
        if v.value < 20:
            buf.append(0xE0 | v.value)
        else:
            buf += _pack_BB(0xF8, v.value)
    elif v is UNDEFINED:
        buf.append(0xF7)
    else:
        _enc_subclass(buf, v, depth)


def _enc_subclass(buf, v, depth):
    # Subclasses of the supported built-ins (an OrderedDict, an int subclass...) are
    # encoded as their base type; anything else is refused.
    if isinstance(v, int):
        _enc_int(buf, int(v))
    elif isinstance(v, float):
        _enc_float(buf, float(v), True)
    elif isinstance(v, str):
        b = str.encode(v, "utf-8")
        _head(buf, 0x60, len(b))
        buf += b
    elif isinstance(v, (bytes, bytearray)):
        _head(buf, 0x40, len(v))
        buf += v
    elif isinstance(v, (list, tuple)):
        _enc(buf, list(v), depth)
    elif isinstance(v, dict):
        _enc(buf, dict(v), depth)
    else:
        raise EncodeError("cannot encode {} value {!r} as CBOR".format(type(v).__name__, v))


def encode_into(buf, obj):
    """Append the encoding of ``obj`` to the bytearray ``buf``."""
    _enc(buf, obj, 0)


def encode(obj):
    """Encode ``obj`` in preferred serialisation with deterministic map order."""
    buf = bytearray()
    _enc(buf, obj, 0)
    return bytes(buf)


# --- UTF-8 validation for runtimes whose bytes.decode() is lenient ----------------------


def _utf8_error(b):
    """Index of the first invalid byte in ``b`` (RFC 3629 well-formedness), or -1."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= c <= 0xEF:
            need = 2
            lo = 0xA0 if c == 0xE0 else 0x80  # no overlongs
            hi = 0x9F if c == 0xED else 0xBF  # no surrogates
        elif 0xF0 <= c <= 0xF4:
            need = 3
            lo = 0x90 if c == 0xF0 else 0x80  # no overlongs
            hi = 0x8F if c == 0xF4 else 0xBF  # nothing above U+10FFFF
        else:
            return i
        if i + need >= n:
            return i
        d = b[i + 1]
        if d < lo or d > hi:
            return i
        for j in range(i + 2, i + need + 1):
            d = b[j]
            if d < 0x80 or d > 0xBF:
                return i
        i += need + 1
    return -1


def _text(chunk, offset):
    try:
        s = chunk.decode("utf-8")
    except UnicodeError:
        raise DecodeError(offset, "invalid UTF-8 in text string") from None
    if not _STRICT_UTF8 and len(s) != len(chunk) and _utf8_error(chunk) >= 0:
        raise DecodeError(offset, "invalid UTF-8 in text string")
    return s


# --- decoder -------------------------------------------------------------------------------


def _argument(data, i, ai, start):
    """Value of the head argument for additional info ``ai`` >= 24; returns (value, i)."""
    if ai == 24:
        return data[i], i + 1
    if ai == 25:
        return (data[i] << 8) | data[i + 1], i + 2
    if ai == 26:
        if i + 4 > len(data):
            raise DecodeError(len(data), "unexpected end of input")
        return _unpack_from(">I", data, i)[0], i + 4
    if ai == 27:
        if i + 8 > len(data):
            raise DecodeError(len(data), "unexpected end of input")
        return _unpack_from(">Q", data, i)[0], i + 8
    if ai == 31:
        raise DecodeError(
            start, "indefinite length not allowed for major type {}".format(data[start] >> 5)
        )
    raise DecodeError(start, "reserved additional information value {}".format(ai))


def _too_long(start, n, left):
    return DecodeError(
        start, "declared length {} exceeds the {} bytes of input left".format(n, left)
    )


def _indefinite_string(data, i, major, start):
    chunks = []
    while True:
        b = data[i]
        if b == 0xFF:
            i += 1
            break
        if b >> 5 != major:
            raise DecodeError(
                i,
                "chunk of major type {} inside an indefinite string of major type {}".format(
                    b >> 5, major
                ),
            )
        ai = b & 31
        if ai == 31:
            raise DecodeError(i, "indefinite-length chunk inside an indefinite string")
        cstart = i
        i += 1
        if ai < 24:
            n = ai
        else:
            n, i = _argument(data, i, ai, cstart)
        if n > len(data) - i:
            raise _too_long(cstart, n, len(data) - i)
        chunk = data[i : i + n]
        if major == 3:
            chunk = _text(chunk, cstart)
        chunks.append(chunk)
        i += n
    if major == 2:
        return b"".join(chunks), i
    return "".join(chunks), i


def _dec(data, i, room, len=len):
    """Decode the item at ``i``; ``room`` is how many more levels may nest.

    Returns (value, index after the item).  Builtins (and, in ``_dec_array`` and
    ``_dec_map``, struct unpackers) are default arguments for MicroPython's sake, as in
    ``_enc``.
    """
    # The hot path: unsigned ints here, arrays in ``_dec_array``, maps in ``_dec_map``,
    # everything else in ``_dec_rest``.  Inside arrays and maps the items telemetry is
    # made of (small ints, float32 and half floats, 32-bit timestamps, the values array)
    # are decoded inline or straight away: they are nearly every item, and a call per
    # item cost a third of the decode time (bench/bench_codec.py).  A value cut short
    # inside ``unpack_f`` and friends raises the struct error that ``decode`` turns into
    # "unexpected end".
    start = i
    b = data[i]
    i += 1
    if b < 0x80:  # major types 0..3
        if b < 24:
            return b, i
        if b < 32:
            return _argument(data, i, b & 31, start)
        return _dec_rest(data, start, room)
    if b >= 0xC0:  # major types 6 and 7
        return _dec_rest(data, start, room)
    # an array (major type 4, 0x80..0x9f) or a map (major type 5, 0xa0..0xbf)
    if room <= 0:
        raise DecodeError(start, "nesting deeper than max_depth")
    room -= 1
    ai = b & 31
    if ai < 24:
        n = ai
    elif ai == 31:
        if b == 0x9F:
            return _indefinite_array(data, i, room)
        return _indefinite_map(data, i, room)
    else:
        n, i = _argument(data, i, ai, start)
    left = len(data) - i
    if b < 0xA0:
        return _dec_array(data, i, n, room, start, left)
    return _dec_map(data, i, n, room, start, left)


def _dec_array(data, i, n, room, start, left, range=range, unpack_f=_unpack_f, unpack_e=_unpack_e):
    """The ``n`` items of the array whose head is at ``start``; ``i`` follows the head."""
    if n > left:  # every item takes at least one byte
        raise _too_long(start, n, left)
    out = []
    append = out.append
    for _ in range(n):
        b = data[i]
        if b < 24:
            append(b)
            i += 1
        elif b < 26:
            if b == 25:
                append((data[i + 1] << 8) | data[i + 2])
                i += 3
            else:
                append(data[i + 1])
                i += 2
        elif b == 0xFA:
            append(unpack_f(data, i + 1)[0])
            i += 5
        elif b == 0xF9:
            append(unpack_e(data, i + 1)[0])
            i += 3
        else:
            v, i = _dec(data, i, room)
            append(v)
    return out, i


def _dec_map(data, i, n, room, start, left, type=type, range=range, len=len, unpack_I=_unpack_I):
    """The ``n`` entries of the map whose head is at ``start``; ``i`` follows the head."""
    if n > left >> 1:  # every key and every value takes at least one byte
        raise DecodeError(
            start,
            "declared map of {} entries needs at least {} bytes, {} left".format(n, 2 * n, left),
        )
    out = {}
    first = i
    nan_key = False
    kstart = i
    k = None
    try:
        for _ in range(n):
            kstart = i
            k = data[i]
            if k < 24:
                i += 1
            else:
                k, i = _dec(data, i, room)
                if type(k) is float and k != k:
                    nan_key = _check_nan_key(nan_key, kstart)
            b = data[i]
            if b < 24:
                out[k] = b
                i += 1
            elif b == 25:
                out[k] = (data[i + 1] << 8) | data[i + 2]
                i += 3
            elif b == 24:
                out[k] = data[i + 1]
                i += 2
            elif b == 26:
                out[k] = unpack_I(data, i + 1)[0]
                i += 5
            elif 0x80 <= b < 0x98 and room > 0:  # a short array (telemetry's values)
                out[k], i = _dec_array(data, i + 1, b - 0x80, room - 1, i, len(data) - i - 1)
            else:
                out[k], i = _dec(data, i, room)
    except TypeError:
        raise DecodeError(kstart, "unhashable map key (array or map) {!r}".format(k)) from None
    if len(out) != n:  # a key repeated: walk the map again to say where
        _raise_duplicate_key(data, first, n, room)
    return out, i


def _dec_rest(data, start, room):
    """``_dec`` for major types 1, 2, 3, 6 and 7 (the item's head is at ``start``)."""
    b = data[start]
    i = start + 1
    major = b >> 5
    ai = b & 31
    if major == 7:
        return _dec_simple(data, i, ai)
    if major == 1:
        if ai < 24:
            return -1 - ai, i
        n, i = _argument(data, i, ai, start)
        return -1 - n, i
    if major == 2 or major == 3:
        if ai < 24:
            n = ai
        elif ai == 31:
            return _indefinite_string(data, i, major, start)
        else:
            n, i = _argument(data, i, ai, start)
        if n > len(data) - i:
            raise _too_long(start, n, len(data) - i)
        chunk = data[i : i + n]
        if major == 3:
            return _text(chunk, start), i + n
        return chunk, i + n
    # major 6: tag
    if room <= 0:
        raise DecodeError(start, "nesting deeper than max_depth")
    if ai < 24:
        tag = ai
    else:
        tag, i = _argument(data, i, ai, start)
    vstart = i
    v, i = _dec(data, i, room - 1)
    if tag == 2 or tag == 3:
        if type(v) is not bytes:
            raise DecodeError(vstart, "bignum tag {} content must be a byte string".format(tag))
        n = int.from_bytes(v, "big")
        return (n if tag == 2 else -1 - n), i
    return Tag(tag, v), i


def _dec_simple(data, i, ai):
    """Major type 7 (floats and simple values) after its head byte; ``i`` follows it."""
    start = i - 1
    if ai == 27:
        if i + 8 > len(data):
            raise DecodeError(len(data), "unexpected end of input")
        return _unpack_from(">d", data, i)[0], i + 8
    if ai == 26:
        if i + 4 > len(data):
            raise DecodeError(len(data), "unexpected end of input")
        return _unpack_from(">f", data, i)[0], i + 4
    if ai == 25:
        if i + 2 > len(data):
            raise DecodeError(len(data), "unexpected end of input")
        if _HAS_HALF:
            return _unpack_from(">e", data, i)[0], i + 2
        return _half_value((data[i] << 8) | data[i + 1]), i + 2
    if ai == 20:
        return False, i
    if ai == 21:
        return True, i
    if ai == 22:
        return None, i
    if ai == 23:
        return UNDEFINED, i
    if ai < 20:
        return Simple(ai), i
    if ai == 24:
        n = data[i]
        if n < 32:
            raise DecodeError(start, "two-byte simple value {} below 32".format(n))
        return Simple(n), i + 1
    if ai == 31:
        raise DecodeError(start, "break outside an indefinite-length item")
    raise DecodeError(start, "reserved additional information value {}".format(ai))


def _map_put(out, k, v, kstart):
    try:
        if k in out:
            raise DecodeError(kstart, "duplicate map key {!r}".format(k))
    except TypeError:
        raise DecodeError(kstart, "unhashable map key (array or map) {!r}".format(k)) from None
    out[k] = v


def _check_nan_key(seen, kstart):
    # NaN != NaN, so a dict would keep a repeated NaN key; CBOR calls it a duplicate
    if seen:
        raise DecodeError(kstart, "duplicate map key nan")
    return True


def _raise_duplicate_key(data, i, n, room):
    """Raise at the first repeated key among the ``n`` map entries starting at ``i``."""
    seen = {}
    for _ in range(n):
        kstart = i
        k, i = _dec(data, i, room)
        v, i = _dec(data, i, room)
        _map_put(seen, k, v, kstart)


def _indefinite_array(data, i, room):
    out = []
    while data[i] != 0xFF:
        v, i = _dec(data, i, room)
        out.append(v)
    return out, i + 1


def _indefinite_map(data, i, room):
    out = {}
    nan_key = False
    while data[i] != 0xFF:
        kstart = i
        k, i = _dec(data, i, room)
        if type(k) is float and k != k:
            nan_key = _check_nan_key(nan_key, kstart)
        v, i = _dec(data, i, room)
        _map_put(out, k, v, kstart)
    return out, i + 1


def decode(data, max_depth=16, max_size=None):
    """Decode exactly one CBOR item from ``data`` (bytes, bytearray or memoryview).

    ``max_depth`` bounds nesting of arrays, maps and tags; ``max_size`` (if given) is
    the largest message accepted, in bytes.  Raises ``DecodeError`` on malformed input.
    """
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if max_size is not None and n > max_size:
        raise DecodeError(
            max_size, "message of {} bytes is longer than max_size {}".format(n, max_size)
        )
    try:
        b = data[0]
        if 0xA0 <= b < 0xB8 and max_depth > 0:  # a short map (every protocol message)
            v, i = _dec_map(data, 1, b - 0xA0, max_depth - 1, 0, n - 1)
        else:
            v, i = _dec(data, 0, max_depth)
    except IndexError:
        raise DecodeError(n, "unexpected end of input") from None
    except _StructError as exc:  # an inline unpack_from past the end (see _dec)
        if isinstance(exc, DecodeError):  # MicroPython: _StructError is ValueError
            raise
        raise DecodeError(n, "unexpected end of input") from None
    if i != n:
        raise DecodeError(i, "{} trailing bytes after the top-level item".format(n - i))
    return v
