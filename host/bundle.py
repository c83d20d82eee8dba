"""Build what goes onto a MicroPython board's filesystem (``skid bundle``).

A bundle is a folder laid out as the board's filesystem root::

    DIR/main.py              starts edge.boardmain (after an optional maintenance stop)
    DIR/boot.py              does nothing slow: actuators must be made safe first
    DIR/config.bin           the compiled board config (8-byte hash + canonical CBOR)
    DIR/board_secrets.py     Wi-Fi, broker, line and command key (or a commented template)
    DIR/lib/edge/...mpy      the board's files (edge.boardconfig.board_files), compiled
    DIR/lib/protocol/...mpy  with mpy-cross

Output is deterministic: the same inputs give the same bytes (sorted file lists, source
names embedded relative to the repository, no timestamps), so two bundles can be compared
with ``diff -r`` and a bundle's content can be reviewed before flashing.

Secrets are never printed: errors about them name the file and key, never the value.

.mpy compatibility: ``mpy-cross`` 1.2x emits .mpy version 6 (sub-version 3).  Files
without native code, which is all of edge and protocol, load on any MicroPython v1.19 or
newer (the sub-version is only checked for native code; docs/reference/mpyfiles.rst of
MicroPython); the runtime is tested on v1.23+ and in CI on the v1.27 WebAssembly port.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge.boardconfig import compile_config, load_board_config
from edge.boardconfig.board_files import MPY_CROSS_ARGS, ROOT, features_of, files_for_config
from edge.boardconfig.compile import board_file
from host.board_ram_table import MEASURED
from host.keys import decode_key, key_path
from protocol.auth import KEY_MAX_LEN, KEY_MIN_LEN
from protocol.wire import ID_PATTERN, ID_RULE

CONFIG_FILE = "config.bin"  # edge.boardmain.CONFIG_FILE
SECRETS_FILE = "board_secrets.py"  # imported by edge.boardmain as ``board_secrets``
MAINTENANCE_FILE = "maintenance"  # present on the board: main.py does not start the node
MPY_VERSION = 6  # .mpy major version of MicroPython v1.19 and newer
KIB = 1024
FS_BLOCK = 4096  # littlefs block size on rp2 and esp32 (one flash erase sector)


class BundleError(Exception):
    """A bundle cannot be built; the message never contains a secret value."""


class SecretsError(BundleError):
    """The secrets file is unreadable or invalid (message names file and key only)."""


class TargetMismatch(BundleError):
    """The board config's ``module.target`` cannot run in the requested bundle target."""


@dataclass(frozen=True)
class Target:
    name: str
    march: str | None  # mpy-cross -march; None: bytecode only, runs on any port
    free_flash: int  # bytes of filesystem a typical board offers with the stock firmware
    flash_note: str  # where that number comes from
    config_targets: tuple[str, ...]  # board config targets this bundle may carry
    heap: int = 0  # bytes of MicroPython GC heap the node may use (docs/deploy.md, "Memory")
    heap_note: str = ""  # where that number comes from


TARGETS = {
    "rp2": Target(
        "rp2",
        "armv6m",  # RP2040: Cortex-M0+
        848 * KIB,
        "Raspberry Pi Pico W, 2 MiB flash, stock MicroPython: 848 KiB filesystem "
        "(MICROPY_HW_FLASH_STORAGE_BYTES in ports/rp2/boards/RPI_PICO_W/mpconfigboard.h; "
        "the plain Pico has 1408 KiB)",
        ("rp2", "generic"),
        # docs/deploy.md, "Memory": the GC heap is all RAM the firmware leaves free
        # (micropython PR #10968, v1.20): ~192 KiB on a Pico (less on a Pico W, whose
        # Wi-Fi driver's static buffers come out of the same RAM: check yours with
        # micropython.mem_info()), minus 16 KiB for the interpreter's own start-up
        # objects, asyncio, the socket and Wi-Fi objects (estimate).
        (192 - 16) * KIB,
        "Raspberry Pi Pico (W), stock MicroPython v1.20+: GC heap ~192 KiB, all SRAM the "
        "firmware leaves free (micropython PR #10968; a Pico W has less: estimate) minus "
        "16 KiB for interpreter, asyncio and sockets (estimate)",
    ),
    "esp32": Target(
        "esp32",
        "xtensawin",  # ESP32 (Xtensa LX6, windowed ABI)
        960 * KIB,
        "ESP32 with 4 MiB flash, stock MicroPython: 960 KiB vfs partition "
        "(0xF0000 in ports/esp32/partitions-4MiB.csv; older builds gave 2 MiB)",
        ("esp32", "generic"),
        # Stock ESP32_GENERIC without PSRAM: 111,936 B of GC heap once grown (micropython
        # PR #13219, v1.22+), the IDF keeps ~40 KiB for Wi-Fi and sockets itself.
        111936 - 16 * KIB,
        "ESP32 without PSRAM, stock MicroPython v1.22+: GC heap 111,936 B once grown "
        "(micropython PR #13219) minus 16 KiB for interpreter, asyncio and sockets "
        "(estimate)",
    ),
    "generic": Target(
        "generic",
        None,
        848 * KIB,
        "any MicroPython port (bytecode only); compared with the smallest board above, "
        "the Pico W's 848 KiB",
        ("rp2", "esp32", "generic"),
        111936 - 16 * KIB,
        "any MicroPython port: compared with the smallest heap above, the ESP32's",
    ),
}
TARGET_NAMES = tuple(TARGETS)

# -- the two entry files ------------------------------------------------------------------

BOOT_PY = """\
# flowskid: written by `skid bundle`.  Nothing here on purpose: main.py builds the
# actuators (each writes its safe value) before anything slow such as Wi-Fi.
"""

MAIN_PY = """\
# flowskid: written by `skid bundle`; rebuild the bundle rather than editing this file.
# A file named 'maintenance' on the board stops the node from starting (no watchdog
# armed), so `skid flash` can copy files without the watchdog resetting the board.
import os


def _present(name):
    try:
        os.stat(name)
        return True
    except OSError:
        return False


if _present("maintenance"):
    print("flowskid: 'maintenance' present: node not started (delete it and reset to run)")
else:
    # edge.boardmain builds the actuators (each writes its safe value), then starts the
    # Wi-Fi and resolves the broker, then arms the watchdog and runs the tick loop.
    import edge.boardmain as boardmain

    boardmain.main()
"""

SECRETS_TEMPLATE = """\
# flowskid board secrets (board_secrets.py): fill in and keep this file private.
# Written by `skid bundle` without --secrets; every line is commented out, so the module
# runs its local control and protection without a network until this file is filled.
# Better: write a secrets TOML (see docs/deploy.md) and rebuild with --secrets FILE.
#
# WIFI_SSID = "plant-wifi"
# WIFI_PASSWORD = "<wifi password>"
# BROKER_HOST = "192.168.1.10"
# BROKER_PORT = 1883
# LINE = "line1"
# MQTT_USER = "<module account>"
# MQTT_PASSWORD = "<module password>"
# COMMAND_KEY = b"<16-32 bytes: the module's command key>"
"""

# name -> allowed Python types in board_secrets.py
SECRET_NAMES = {
    "WIFI_SSID": (str,),
    "WIFI_PASSWORD": (str,),
    "BROKER_HOST": (str,),
    "BROKER_PORT": (int,),
    "LINE": (str,),
    "MQTT_USER": (str,),
    "MQTT_PASSWORD": (str,),
    "COMMAND_KEY": (bytes,),
}
_ID_RE = re.compile(ID_PATTERN + r"\Z")  # line ids, as module ids

# -- mpy-cross ----------------------------------------------------------------------------


def mpy_cross_path() -> str:
    """The mpy-cross beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if found is None:
        raise BundleError("mpy-cross not found: install it with `pip install mpy-cross`")
    return found


def mpy_cross_version(exe: str | None = None) -> str:
    """``mpy-cross --version`` text, e.g. 'MicroPython v1.29.0 ...; mpy-cross emitting mpy
    v6.3'.  Refuses an mpy-cross whose .mpy major version boards cannot load."""
    out = subprocess.run(
        [exe or mpy_cross_path(), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    m = re.search(r"mpy v(\d+)", out)
    if m is None or int(m.group(1)) != MPY_VERSION:
        raise BundleError(
            f"mpy-cross reports {out!r}: .mpy version {MPY_VERSION} required "
            "(MicroPython v1.19 or newer)"
        )
    return out


def mpy_cross_command(exe: str, src: Path, out: Path, source_name: str, target: str) -> list[str]:
    """The mpy-cross command line compiling ``src`` for ``target``.

    ``-s source_name`` embeds the path relative to the repository (tracebacks name
    "edge/node.py", and the build machine's paths stay out of the bundle).  ``-march``
    sets the native-code architecture: edge and protocol are plain bytecode, so today the
    .mpy bytes are the same for every target, but a function marked
    ``@micropython.native`` would be compiled for the board's CPU, and its file header
    would then carry the architecture (see ``read_mpy_header``)."""
    cmd = [exe, *MPY_CROSS_ARGS]
    march = TARGETS[target].march
    if march is not None:
        cmd.append("-march=" + march)
    return [*cmd, "-s", source_name, "-o", str(out), str(src)]


MPY_ARCH_NAMES = (
    None,
    "x86",
    "x64",
    "armv6",
    "armv6m",
    "armv7m",
    "armv7em",
    "armv7emsp",
    "armv7emdp",
    "xtensa",
    "xtensawin",
    "rv32imc",
    "rv64imc",
)


@dataclass(frozen=True)
class MpyHeader:
    version: int
    sub_version: int
    arch: str | None  # None: bytecode only (the file loads on any architecture)
    small_int_bits: int


def read_mpy_header(data: bytes) -> MpyHeader:
    """Decode the 4-byte .mpy header: 'M', version, feature byte (bits 0-1 sub-version,
    bits 2-7 native architecture), bits in a small int."""
    if len(data) < 4 or data[0] != ord("M"):
        raise ValueError("not a MicroPython .mpy file (first byte is not 'M')")
    arch = data[2] >> 2
    name = MPY_ARCH_NAMES[arch] if arch < len(MPY_ARCH_NAMES) else f"arch{arch}"
    return MpyHeader(data[1], data[2] & 3, name, data[3])


# -- secrets ------------------------------------------------------------------------------


def _secret_str(file, key, value, lo, hi) -> str:
    if not isinstance(value, str) or not lo <= len(value) <= hi:
        raise SecretsError(f"{file}: {key}: a string of {lo}-{hi} characters required")
    return value


def read_command_key(file: Path, key: str, text: str) -> bytes:
    """A key file holds hex text or raw bytes (read as ``host.keys`` reads every key)."""
    path = key_path(file, text)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SecretsError(f"{file}: {key}: cannot read {path}: {exc.strerror}") from None
    return decode_key(data)


_SECRETS_KEYS = {
    "line": None,
    "wifi": {"ssid", "password"},
    "broker": {"url", "username", "password"},
    "command_key": {"file", "hex"},
}


def secrets_from_toml(path: Path) -> dict:
    """Read a secrets TOML file into board_secrets names.

    ::

        line = "line1"
        [wifi]
        ssid = "plant-wifi"
        password = "..."
        [broker]
        url = "mqtt://192.168.1.10:1883"
        username = "reactor1"
        password = "..."
        [command_key]
        file = "keys/reactor1.key"     # or hex = "<32-64 hex digits>"
    """
    doc = _read_secrets_toml(path)
    out: dict = {}
    if "line" in doc:
        line = doc["line"]
        if not isinstance(line, str) or not _ID_RE.match(line):
            raise SecretsError(f"{path}: line = {line!r}: expected {ID_RULE}")
        out["LINE"] = line
    out.update(_wifi_secrets(path, doc.get("wifi", {})))
    out.update(_broker_secrets(path, doc.get("broker", {})))
    key = _command_key(path, doc.get("command_key", {}))
    if key is not None:
        out["COMMAND_KEY"] = key
    return out


def _read_secrets_toml(path: Path) -> dict:
    """The secrets TOML, with only known tables and keys in it (SecretsError)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SecretsError(f"{path}: cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        # The decoder's message may quote the offending text: a password, say.
        raise SecretsError(f"{path}: is not valid TOML (details withheld: secrets)") from None
    for key, value in doc.items():
        if key not in _SECRETS_KEYS:
            raise SecretsError(f"{path}: {key}: unknown key: allowed {', '.join(_SECRETS_KEYS)}")
        sub = _SECRETS_KEYS[key]
        if sub is None:
            continue
        if not isinstance(value, dict):
            raise SecretsError(f"{path}: {key}: a table required")
        for k in value:
            if k not in sub:
                raise SecretsError(
                    f"{path}: {key}.{k}: unknown key: allowed {', '.join(sorted(sub))}"
                )
    return doc


def _wifi_secrets(path: Path, wifi: dict) -> dict:
    out = {}
    if "ssid" in wifi:
        out["WIFI_SSID"] = _secret_str(path, "wifi.ssid", wifi["ssid"], 1, 32)
    if "password" in wifi:
        # WPA2-PSK passphrase: 8-63 characters; empty for an open network
        pw = wifi["password"]
        if not isinstance(pw, str) or not (pw == "" or 8 <= len(pw) <= 63):
            raise SecretsError(f"{path}: wifi.password: 8-63 characters (or empty) required")
        out["WIFI_PASSWORD"] = pw
    return out


def _broker_secrets(path: Path, broker: dict) -> dict:
    out = {}
    if "url" in broker:
        url = broker["url"]
        m = re.match(r"(mqtt|tcp)://([A-Za-z0-9.-]+)(?::(\d{1,5}))?/?\Z", str(url))
        if not isinstance(url, str) or m is None or not 1 <= int(m.group(3) or 1883) <= 65535:
            # The value is not shown: a URL may carry user:password@.
            raise SecretsError(
                f"{path}: broker.url: expected mqtt://HOST[:PORT] "
                "(port 1-65535, no user:password@ in it; boards speak plain MQTT, no TLS)"
            )
        out["BROKER_HOST"] = m.group(2)
        out["BROKER_PORT"] = int(m.group(3) or 1883)
    if "username" in broker:
        out["MQTT_USER"] = _secret_str(path, "broker.username", broker["username"], 1, 64)
    if "password" in broker:
        out["MQTT_PASSWORD"] = _secret_str(path, "broker.password", broker["password"], 1, 128)
    return out


def _command_key(path: Path, ck: dict) -> bytes | None:
    if len(ck) > 1:
        raise SecretsError(f"{path}: command_key: give either file or hex, not both")
    key = None
    if "file" in ck:
        key = read_command_key(path, "command_key.file", str(ck["file"]))
    elif "hex" in ck:
        try:
            key = bytes.fromhex(str(ck["hex"]))
        except ValueError:
            raise SecretsError(f"{path}: command_key.hex: not hexadecimal") from None
    if key is not None and not KEY_MIN_LEN <= len(key) <= KEY_MAX_LEN:
        raise SecretsError(
            f"{path}: command_key: {KEY_MIN_LEN}-{KEY_MAX_LEN} bytes required, got {len(key)}"
        )
    return key


def check_secrets_py(path: Path) -> bytes:
    """A ready ``board_secrets.py``: only ``NAME = literal`` lines with known names."""
    try:
        data = path.read_bytes()
        tree = ast.parse(data, filename=path.name)
    except OSError as exc:
        raise SecretsError(f"{path}: cannot be read: {exc.strerror}") from None
    except (SyntaxError, ValueError):
        raise SecretsError(f"{path}: is not valid Python (details withheld: secrets)") from None
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        ok = (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        )
        if not ok:
            raise SecretsError(f"{path}:{node.lineno}: only NAME = value lines are allowed")
        name = node.targets[0].id  # pyright: ignore[reportAttributeAccessIssue]
        if name not in SECRET_NAMES:
            raise SecretsError(
                f"{path}:{node.lineno}: {name}: unknown name: allowed {', '.join(SECRET_NAMES)}"
            )
        value = node.value
        if not isinstance(value, ast.Constant) or not isinstance(value.value, SECRET_NAMES[name]):
            kind = SECRET_NAMES[name][0].__name__
            raise SecretsError(f"{path}:{node.lineno}: {name}: a {kind} literal required")
        if name == "COMMAND_KEY" and not KEY_MIN_LEN <= len(value.value) <= KEY_MAX_LEN:
            raise SecretsError(
                f"{path}:{node.lineno}: COMMAND_KEY: {KEY_MIN_LEN}-{KEY_MAX_LEN} bytes required"
            )
    return data


def render_secrets(secrets: dict) -> bytes:
    lines = ["# flowskid board secrets: written by `skid bundle --secrets`.  Keep private."]
    for name in SECRET_NAMES:  # fixed order: deterministic output
        if name in secrets:
            lines.append(f"{name} = {secrets[name]!r}")
    return ("\n".join(lines) + "\n").encode()


def secrets_bytes(path: Path | None) -> tuple[bytes, bool]:
    """(content of board_secrets.py, True if real secrets rather than the template)."""
    if path is None:
        return SECRETS_TEMPLATE.encode(), False
    path = Path(path)
    if path.suffix == ".py":
        return check_secrets_py(path), True
    return render_secrets(secrets_from_toml(path)), True


# -- RAM ----------------------------------------------------------------------------------

# With the board packages frozen into the firmware, imports cost what the module objects
# (globals, classes, functions) take, not the bytecode.  Measured outside this repository:
# MicroPython 1.29-preview, qemu port MPS2_AN385, every board file frozen, the reference
# reactor: gc.mem_alloc() 7 KB before the imports and 29 KB after (docs/deploy.md).
FROZEN_IMPORTS = 22_000
RAM_SOURCE = "Node WebAssembly MicroPython 1.27, bench/bench_edge.py (host/board_ram_table.py)"


def estimate(kind: str, modules: list[str], frozen: bool = False) -> dict:
    """Heap a board needs after boot: ``imports`` (its modules, loaded from .mpy) +
    ``runtime`` (node, link, full outage queues), from the measured table.  A shipped kind
    with its own file set gets its measured figure; anything else the sum of each module's
    measured cost (largest over the kinds; modules never measured at the mean) plus the
    kind's runtime (the largest if the kind was not measured)."""
    m = MEASURED.get(kind)
    if m and set(m["per_module"]) == set(modules) and not frozen:
        return {
            "bytes": m["total"],
            "imports": m["imports"],
            "runtime": m["runtime"],
            "how": f"measured ({kind}; {RAM_SOURCE})",
        }
    per: dict[str, int] = {}
    for k in MEASURED.values():
        for rel, n in k["per_module"].items():
            per[rel] = max(per.get(rel, 0), n)
    mean = sum(per.values()) // len(per) if per else 0
    imports = sum(per.get(rel, mean) for rel in modules)
    runtime = m["runtime"] if m else max((k["runtime"] for k in MEASURED.values()), default=0)
    how = f"estimated from per-module figures ({RAM_SOURCE})"
    if frozen:
        imports = FROZEN_IMPORTS
        how = "estimated: runtime measured, frozen imports from the qemu measurement"
    return {"bytes": imports + runtime, "imports": imports, "runtime": runtime, "how": how}


# -- the bundle ---------------------------------------------------------------------------


@dataclass
class Bundle:
    out_dir: Path
    target: Target
    module_id: str
    config_hash: str  # hex, as births report it
    mpy_cross: str  # its --version line
    files: dict[str, int] = field(default_factory=dict)  # relative path -> bytes
    has_secrets: bool = False
    modules: list[str] = field(default_factory=list)  # board sources, dependencies first
    features: list[str] = field(default_factory=list)  # optional modules the config uses
    frozen: bool = False  # no lib/: the board packages are frozen into the firmware
    ram: dict = field(default_factory=dict)  # host.board_ram.estimate (see check_ram)

    def parts(self) -> dict[str, int]:
        """Bytes per part: lib/edge, lib/protocol, config, entry (boot/main), secrets."""
        parts = {"lib/edge": 0, "lib/protocol": 0, "config": 0, "entry": 0, "secrets": 0}
        for rel, size in self.files.items():
            if rel.startswith("lib/edge/"):
                parts["lib/edge"] += size
            elif rel.startswith("lib/protocol/"):
                parts["lib/protocol"] += size
            elif rel == CONFIG_FILE:
                parts["config"] += size
            elif rel == SECRETS_FILE:
                parts["secrets"] += size
            else:
                parts["entry"] += size
        return parts

    @property
    def total(self) -> int:
        return sum(self.files.values())

    @property
    def on_flash(self) -> int:
        """Upper bound of filesystem use: each file rounded up to whole 4 KiB blocks
        (littlefs stores small files inline, so the real figure is lower)."""
        return sum(max(1, -(-size // FS_BLOCK)) * FS_BLOCK for size in self.files.values())

    def summary(self) -> dict:
        """Everything worth reporting; never a secret (only whether there are any)."""
        t = self.target
        return {
            "bundle": str(self.out_dir),
            "target": t.name,
            "march": t.march,
            "module": self.module_id,
            "config_hash": self.config_hash,
            "mpy_cross": self.mpy_cross,
            "files": len(self.files),
            "bytes": self.total,
            "parts": self.parts(),
            "flash_bytes_upper_bound": self.on_flash,
            "free_flash_bytes": t.free_flash,
            "free_flash_assumed": t.flash_note,
            "fraction_of_free_flash": round(self.on_flash / t.free_flash, 4),
            "secrets": "included" if self.has_secrets else "template",
            "frozen": self.frozen,
            "modules": len(self.modules),
            "features": self.features,
            "ram_bytes": self.ram["bytes"],
            "ram_imports_bytes": self.ram["imports"],
            "ram_runtime_bytes": self.ram["runtime"],
            "ram_how": self.ram["how"],
            "heap_bytes": t.heap,
            "heap_assumed": t.heap_note,
            "heap_headroom_bytes": t.heap - self.ram["bytes"],
        }


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:
        # Created owner-only before any byte is written.
        # An existing file keeps its mode on O_CREAT: narrow it before the first byte.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def build_bundle(
    config_path: Path | str,
    target: str,
    out_dir: Path | str,
    secrets_path: Path | str | None = None,
    root: Path = ROOT,
    module_id: str | None = None,
    frozen: bool = False,
) -> Bundle:
    """Validate the board config, then write the bundle to ``out_dir``.

    Only the files the compiled config needs go in (``files_for_config``: a pump carries
    no heater verification, 1oo2 voter, PT100 calibration or MAX31865 driver).
    ``module_id`` replaces the config's ``module.id`` (one pump.toml for pump_a and
    pump_b; the config hash changes with it).  ``frozen``: no ``lib/`` at all, for a
    firmware with the board packages frozen in (firmware/manifest.py).

    Raises ``edge.boardconfig.ConfigErrors`` for a config that fails validation,
    ``SecretsError`` for bad secrets and ``BundleError`` for anything else.  Nothing is
    written before the config and the secrets have been checked."""
    if target not in TARGETS:
        raise TargetMismatch(f"--target {target!r}: allowed {', '.join(TARGET_NAMES)}")
    tgt = TARGETS[target]
    cfg = load_board_config(config_path)  # raises ConfigErrors
    if cfg.target not in tgt.config_targets:
        raise TargetMismatch(
            f"{config_path}: module.target = {cfg.target!r} cannot run in a {target} bundle: "
            f"allowed {', '.join(tgt.config_targets)}"
            + (
                " (a Raspberry Pi runs `skid edge`, see docs/deploy.md)"
                if cfg.target == "linux"
                else ""
            )
        )
    if module_id is not None:
        if not _ID_RE.match(module_id):
            raise TargetMismatch(f"--module-id {module_id!r}: expected {ID_RULE}")
        cfg.data["module"]["id"] = module_id
    compiled = compile_config(cfg)
    blob = board_file(compiled)
    secrets, has_secrets = secrets_bytes(Path(secrets_path) if secrets_path else None)
    exe = mpy_cross_path()
    version = mpy_cross_version(exe)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lib = out / "lib"
    for pkg in ("edge", "protocol"):
        if (lib / pkg).exists():
            shutil.rmtree(lib / pkg)  # no stale module from an earlier bundle
    bundle = Bundle(out, tgt, cfg.module_id, blob[:8].hex(), version, has_secrets=has_secrets)
    bundle.modules = files_for_config(cfg.data, root)
    bundle.features = features_of(cfg.data)
    bundle.frozen = frozen
    bundle.ram = estimate(cfg.kind, bundle.modules, frozen)
    for rel in [] if frozen else bundle.modules:
        dest = lib / (rel[: -len(".py")] + ".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        cmd = mpy_cross_command(exe, root / rel, dest, rel, target)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BundleError(f"mpy-cross failed on {rel}:\n{proc.stderr.strip()}")
        bundle.files[dest.relative_to(out).as_posix()] = dest.stat().st_size
    for name, data, private in (
        (CONFIG_FILE, blob, False),
        ("boot.py", BOOT_PY.encode(), False),
        ("main.py", MAIN_PY.encode(), False),
        (SECRETS_FILE, secrets, has_secrets),
    ):
        _write(out / name, data, private)
        bundle.files[name] = len(data)
    bundle.files = dict(sorted(bundle.files.items()))
    return bundle


# -- flashing -----------------------------------------------------------------------------

# Run on the board before copying: remove the previous bundle's packages (a stale
# edge/foo.py would shadow edge/foo.mpy) and make sure /lib exists.
_CLEAN_SCRIPT = (
    "import os\n"
    "def rm(p):\n"
    "    try:\n"
    "        mode = os.stat(p)[0]\n"
    "    except OSError:\n"
    "        return\n"
    "    if mode & 0x4000:\n"
    "        for n in os.listdir(p):\n"
    "            rm(p + '/' + n)\n"
    "        os.rmdir(p)\n"
    "    else:\n"
    "        os.remove(p)\n"
    "rm('lib/edge')\n"
    "rm('lib/protocol')\n"
    "try:\n"
    "    os.mkdir('lib')\n"
    "except OSError:\n"
    "    pass\n"
)
# One line for the shell (the newlines become \n escapes inside a string literal).
CLEAN_COMMAND = "exec(" + repr(_CLEAN_SCRIPT) + ")"


def flash_commands(
    bundle_dir: Path | str, port: str, mpremote: str = "mpremote"
) -> list[list[str]]:
    """The mpremote command lines that put a bundle on the board at ``port``, in order.

    1. Stop the node: create the maintenance file and hard-reset, so main.py does not
       start (and does not arm the hardware watchdog, which would otherwise reset the
       board in the middle of the copy).  Run while the old node's watchdog is still
       counting, this step is short; if the board resets under it, run it again.
    2. Remove the previous edge/protocol packages, create /lib.
    3. Copy the packages, then config, entry files and secrets.
    4. Remove the maintenance file and hard-reset: the new bundle starts.
    """
    d = Path(bundle_dir)
    connect = [mpremote, "connect", port]
    top = [str(d / name) for name in ("boot.py", CONFIG_FILE, SECRETS_FILE, "main.py")]
    return [
        [*connect, "fs", "touch", ":" + MAINTENANCE_FILE, "+", "reset"],
        [*connect, "exec", CLEAN_COMMAND],
        [*connect, "fs", "cp", "-r", str(d / "lib" / "edge"), str(d / "lib" / "protocol"), ":lib/"],
        [*connect, "fs", "cp", *top, ":"],
        [*connect, "fs", "rm", ":" + MAINTENANCE_FILE, "+", "reset"],
    ]


def check_bundle_dir(bundle_dir: Path | str) -> None:
    d = Path(bundle_dir)
    missing = [
        name
        for name in ("main.py", "boot.py", CONFIG_FILE, SECRETS_FILE, "lib/edge", "lib/protocol")
        if not (d / name).exists()
    ]
    if missing:
        raise BundleError(
            f"{d}: not a bundle (missing {', '.join(missing)}): build one with `skid bundle`"
        )
