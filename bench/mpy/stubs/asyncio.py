"""A stand-in for ``asyncio`` in the WASI MicroPython build, which has none: only what
edge.link.client needs to import and to build an MqttLink that never runs (the RAM
probe, bench/mpy/board_ram.py, keeps its broker away).  Never on a board."""


class TimeoutError(Exception):  # noqa: A001  (asyncio's name)
    pass


class Event:
    def __init__(self):
        self._set = False

    def set(self):
        self._set = True

    def clear(self):
        self._set = False

    def is_set(self):
        return self._set


class _Loop:
    pass


def get_event_loop():
    return _Loop()
