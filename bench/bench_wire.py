"""Wire-size benchmark: the reference telemetry sample against JSON with channel names.

The reference is 8 channels of a reactor module (four at 0.01, three at 0.001, one at 1
resolution), seq 200, t = 1 h after boot: the message the spec promises fits in 40 bytes.
"""

import json

from protocol.messages import Channel, TelemetryCodec

REFERENCE_CHANNELS = (
    ("t_reactor", "degC", "sensor", -50, 300, 0.01),
    ("t_jacket", "degC", "sensor", -50, 300, 0.01),
    ("p_inlet", "bar", "sensor", 0, 100, 0.01),
    ("p_outlet", "bar", "sensor", 0, 100, 0.01),
    ("flow_a", "mL/min", "sensor", 0, 50, 0.001),
    ("flow_b", "mL/min", "sensor", 0, 50, 0.001),
    ("valve_pos", "", "actuator", 0, 1, 0.001),
    ("heater_on", "", "status", 0, 1, 1),
)
REFERENCE_VALUES = (80.12, 79.87, 5.03, 4.98, 0.250, 0.125, 0.634, 1)
REFERENCE_SEQ = 200
REFERENCE_T_MS = 3600000
# The CBOR object the reference must encode to.
REFERENCE_OBJECT = {0: 3, 1: 1, 2: 200, 3: 3600000, 4: [8012, 7987, 503, 498, 250, 125, 634, 1]}


def reference_channels():
    return [Channel(*spec) for spec in REFERENCE_CHANNELS]


def reference_telemetry():
    codec = TelemetryCodec(reference_channels())
    return codec.build(REFERENCE_SEQ, REFERENCE_T_MS, list(REFERENCE_VALUES))


def reference_json():
    values = {}
    for spec, value in zip(REFERENCE_CHANNELS, REFERENCE_VALUES, strict=True):
        values[spec[0]] = value
    doc = {"seq": REFERENCE_SEQ, "t_ms": REFERENCE_T_MS, "values": values}
    return json.dumps(doc, separators=(",", ":")).encode()


def run() -> list[dict]:
    ours = len(reference_telemetry())
    peer = len(reference_json())
    return [
        {
            "name": "wire.telemetry_bytes",
            "value": ours,
            "unit": "B",
            "peer": "json_with_names",
            "peer_value": peer,
            "ratio": round(ours / peer, 3),
            "target": "<=40 B and <=25% of JSON",
        }
    ]


if __name__ == "__main__":
    for record in run():
        print(record)
