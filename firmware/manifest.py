# MicroPython manifest: freeze flowskid's board packages into a custom firmware build.
#
# Frozen bytecode runs from flash: the board imports it without loading .mpy files into
# RAM, which leaves the heap to Wi-Fi, TLS, buffers and the node (docs/deploy.md,
# "Freezing").  Build, from a MicroPython checkout (v1.23 or newer):
#
#   make -C mpy-cross
#   make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=/path/to/flowskid/firmware/manifest.py
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/flowskid/firmware/manifest.py
#
# Then flash the firmware, and copy only main.py, boot.py, config.bin and
# board_secrets.py (`skid bundle --frozen`): no lib/ folder.
#
# The file list is exactly edge.boardconfig.board_files.board_files() (tests/test_firmware
# _manifest.py keeps them equal).  Paths are relative to this file's folder.

# The board's own frozen modules (asyncio, network helpers...).
include("$(PORT_DIR)/boards/manifest.py")

freeze(
    "..",
    (
        "edge/__init__.py",
        "edge/alarms.py",
        "edge/boardmain.py",
        "edge/build.py",
        "edge/clock.py",
        "edge/compiled_config.py",
        "edge/drivers/__init__.py",
        "edge/drivers/ads1115.py",
        "edge/drivers/emulated.py",
        "edge/drivers/machine_io.py",
        "edge/drivers/max31865.py",
        "edge/drivers/slf3x.py",
        "edge/hal.py",
        "edge/interlocks.py",
        "edge/lease.py",
        "edge/link/__init__.py",
        "edge/link/client.py",
        "edge/link/mqtt_packets.py",
        "edge/node.py",
        "edge/pid.py",
        "edge/rtd.py",
        "edge/runaway.py",
        "edge/runner.py",
        "edge/session.py",
        "edge/signals.py",
        "edge/sink.py",
        "edge/states.py",
        "edge/table.py",
        "edge/voter.py",
        "protocol/__init__.py",
        "protocol/auth.py",
        "protocol/cbor.py",
        "protocol/constants.py",
        "protocol/messages.py",
        "protocol/topics.py",
        "protocol/wire.py",
    ),
)
