"""flowskid edge runtime: the firmware on each module (MicroPython and CPython)."""
