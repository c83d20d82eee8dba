"""flowskid wire protocol: CBOR codec, messages, topics, serial framing.

MicroPython-compatible; imports nothing from the rest of flowskid.
"""
