"""A stand-in for ``random`` in the WASI MicroPython build, which has none: the link
imports it for its reconnect jitter, which the RAM probe never reaches.  Never on a board."""


def getrandbits(n):
    return 0
