"""host/edgeproc.py on a Raspberry Pi: the reset cause a module boots with.

After a watchdog reset, a crash, a kill or a power cut the module must boot latched in
aborted; only a start after a clean stop (the clean-stop marker) boots idle.  The Linux
watchdog's boot status is read through a fake ioctl."""

from __future__ import annotations

import asyncio
import struct

import pytest
from edge_harness import ROOT

from edge.linux import watchdog as wdmod
from edge.linux.watchdog import WDIOF_CARDRESET, LinuxWatchdog
from host.edgeproc import CleanStopMarker, EdgeProcess, boot_reset_cause

REACTOR = ROOT / "board_configs" / "reactor.toml"


@pytest.mark.parametrize(
    "clean, by_watchdog, cause",
    [
        (True, None, "power_on"),
        (True, True, "power_on"),  # reset and cleanly restarted since: bootstatus is per boot
        (False, True, "watchdog"),
        (False, False, "unknown"),
        (False, None, "unknown"),  # a driver that cannot tell
    ],
)
def test_boot_reset_cause(clean, by_watchdog, cause):
    assert boot_reset_cause(clean, by_watchdog) == cause


def process(tmp_path):
    return EdgeProcess(REACTOR, emulated=True, insecure=True, speed=20.0, state_dir=tmp_path)


def test_only_a_start_after_a_clean_stop_boots_unlatched(tmp_path):
    first = process(tmp_path)  # no marker yet: as after a power cut
    assert first.reset_cause == "unknown" and first.node.sm.state_name == "aborted"
    asyncio.run(first.run(duration_s=0.5))
    assert CleanStopMarker(tmp_path, "reactor1").path.exists()

    second = process(tmp_path)  # after a clean stop
    assert second.reset_cause == "power_on" and second.node.sm.state_name == "idle"
    assert not CleanStopMarker(tmp_path, "reactor1").path.exists()  # removed at start

    # `second` never stops cleanly (killed, crashed, hung): the next start is latched.
    third = process(tmp_path)
    assert third.reset_cause == "unknown" and third.node.sm.state_name == "aborted"


def test_a_run_ending_in_an_error_leaves_no_marker(tmp_path):
    proc = process(tmp_path)

    async def crash(max_ticks=None):
        raise RuntimeError("bug in a tick")

    proc.runner.run = crash
    with pytest.raises(RuntimeError):
        asyncio.run(proc.run(duration_s=0.5))
    assert not CleanStopMarker(tmp_path, "reactor1").path.exists()
    assert process(tmp_path).node.sm.state_name == "aborted"


def test_emulated_runs_without_a_state_dir_keep_power_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = EdgeProcess(REACTOR, emulated=True, insecure=True)
    assert proc.marker is None and proc.reset_cause == "power_on"


# --- the Linux watchdog's boot status -------------------------------------------------------


def fake_ioctl(monkeypatch, options, bootstatus):
    import fcntl

    def ioctl(fd, request, buf, mutate=True):
        if request == wdmod.WDIOC_GETSUPPORT:
            if options is None:
                raise OSError(25, "Inappropriate ioctl for device")
            struct.pack_into("I", buf, 0, options)
        elif request == wdmod.WDIOC_GETBOOTSTATUS:
            struct.pack_into("i", buf, 0, bootstatus)
        else:
            raise AssertionError(hex(request))
        return 0

    monkeypatch.setattr(fcntl, "ioctl", ioctl)


@pytest.mark.parametrize(
    "options, bootstatus, expected",
    [
        (WDIOF_CARDRESET, WDIOF_CARDRESET, True),
        (WDIOF_CARDRESET, 0, False),
        (0, WDIOF_CARDRESET, None),  # the driver does not report it: cannot tell
        (None, 0, None),  # no WDIOC_GETSUPPORT at all
    ],
)
def test_watchdog_reports_whether_it_reset_the_board(
    monkeypatch, tmp_path, options, bootstatus, expected
):
    dev = tmp_path / "watchdog"
    dev.write_bytes(b"")
    fake_ioctl(monkeypatch, options, bootstatus)
    with LinuxWatchdog(str(dev)) as wd:
        assert wd.caused_last_reset() is expected
    assert dev.read_bytes() == b"V"  # closed with the magic character
