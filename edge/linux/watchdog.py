"""The Linux hardware watchdog (``/dev/watchdog``), e.g. the Raspberry Pi's bcm2835_wdt.

Opening the device arms it; every write feeds it; if the process stops feeding, the board
resets after ``timeout_s``.  ``close()`` first writes the magic character 'V', which tells
the kernel this is an orderly stop and disarms it (unless the kernel was built with
``nowayout``); a crash never writes it, so the reset still happens.
"""

import os
import struct

# <linux/watchdog.h>: _IOWR('W', 6, int), _IOR('W', 2, int), and the status flag a
# driver sets in its boot status when the last reset was its doing.
WDIOC_SETTIMEOUT = 0xC0045706
WDIOC_GETBOOTSTATUS = 0x80045702
WDIOC_GETSUPPORT = 0x80285700  # _IOR('W', 0, struct watchdog_info): options, version, id
WDIOF_CARDRESET = 0x0020


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

    def boot_status(self):
        """The driver's boot status flags (``WDIOC_GETBOOTSTATUS``), or None when the
        driver does not report one."""
        import fcntl

        buf = bytearray(struct.pack("i", 0))
        try:
            fcntl.ioctl(self._fd, WDIOC_GETBOOTSTATUS, buf, True)
        except OSError:
            return None
        return struct.unpack("i", bytes(buf))[0]

    def options(self):
        """The driver's ``watchdog_info.options`` (``WDIOC_GETSUPPORT``), or None."""
        import fcntl

        buf = bytearray(40)
        try:
            fcntl.ioctl(self._fd, WDIOC_GETSUPPORT, buf, True)
        except OSError:
            return None
        return struct.unpack_from("I", bytes(buf))[0]

    def caused_last_reset(self):
        """True if the driver says it reset the board (``WDIOF_CARDRESET``), False if it
        says it did not, None if it cannot tell: only a driver that lists
        WDIOF_CARDRESET among its options reports it (the Pi's bcm2835_wdt may not)."""
        options = self.options()
        if options is None or not options & WDIOF_CARDRESET:
            return None
        status = self.boot_status()
        if status is None:
            return None
        return bool(status & WDIOF_CARDRESET)

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
