"""The Linux hardware watchdog (``/dev/watchdog``), e.g. the Raspberry Pi's bcm2835_wdt.

Opening the device arms it; every write feeds it; if the process stops feeding, the board
resets after ``timeout_s``.  ``close()`` first writes the magic character 'V', which tells
the kernel this is an orderly stop and disarms it (unless the kernel was built with
``nowayout``); a crash never writes it, so the reset still happens.
"""

import os
import struct

# <linux/watchdog.h>: _IOWR('W', 6, int)
WDIOC_SETTIMEOUT = 0xC0045706


class LinuxWatchdog:
    def __init__(self, path="/dev/watchdog", timeout_s=None):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY)
        self.timeout_s = timeout_s
        if timeout_s is not None:
            try:
                self.timeout_s = self._set_timeout(timeout_s)
            except OSError:
                self.close()
                raise

    def _set_timeout(self, timeout_s):
        import fcntl

        buf = bytearray(struct.pack("i", int(timeout_s)))
        fcntl.ioctl(self._fd, WDIOC_SETTIMEOUT, buf, True)
        return struct.unpack("i", bytes(buf))[0]  # the driver may round it

    def feed(self):
        if self._fd is None:
            raise ValueError("watchdog {} is closed".format(self.path))
        os.write(self._fd, b"\0")

    def close(self):
        """Orderly stop: magic close 'V', then close (disarms unless ``nowayout``)."""
        if self._fd is None:
            return
        try:
            os.write(self._fd, b"V")
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
