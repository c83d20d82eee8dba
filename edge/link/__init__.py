"""Network link of an edge module: MQTT 3.1.1 packets and a non-blocking asyncio client."""
