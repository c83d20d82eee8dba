"""Raspberry Pi (Linux, CPython) hardware: a provider with MicroPython-style bus objects.

Kept out of MicroPython bundles and out of the pyright board check.  Third-party modules
(spidev, smbus2, gpiozero) are imported inside the functions that need them, so importing
this package needs none of them.
"""
