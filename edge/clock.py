"""Wrap-safe millisecond tick arithmetic shared by every piece of the edge core.

Control logic never reads a clock: ``tick(now_ms)`` receives the time.  ``now_ms`` is a
MicroPython-style tick value that wraps at ``TICKS_PERIOD``; only *differences* between
ticks are meaningful and they must be taken with :func:`ticks_diff`, which stays correct
across the wrap as long as the two instants are less than half a period (~6 days) apart.

On a board the async shell feeds ``time.ticks_ms()``; on CPython, emulators and tests feed
any integer (it is reduced modulo the period here, exactly like the board's counter).
"""

try:
    from micropython import const
except ImportError:  # CPython: const() is a compile-time hint on MicroPython only
    const = lambda expr: expr  # noqa: E731


TICKS_PERIOD = const(1 << 30)  # MicroPython's period on rp2, esp32 and the unix port
_TICKS_MAX = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)


def ticks_add(ticks, delta):
    """``ticks + delta`` modulo the tick period (delta may be negative)."""
    return (ticks + delta) & _TICKS_MAX


def ticks_diff(end, start):
    """Signed ``end - start`` in ms, correct across one wrap of the counter."""
    return ((end - start + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF


def ticks_wrap(ms):
    """Reduce an unbounded millisecond count (e.g. simulated time) to a tick value."""
    return ms & _TICKS_MAX


def shared_ms(wall_s, epoch_s, speed):
    """Simulated ms at wall time ``wall_s`` since ``epoch_s`` (both Unix seconds), at
    ``speed`` x real time: the one clock every process of a broker-mode line computes (the
    coordinator, the plant process, each ``skid edge --epoch``).  Unbounded: wrap it with
    ``ticks_wrap`` where a tick value is wanted."""
    return int((wall_s - epoch_s) * speed * 1000.0)
