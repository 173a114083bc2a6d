"""The debug kernel's reports, parsed from kernel logs captured on the real bookworm debug target."""

from __future__ import annotations

from pathlib import Path

from harness.debugkernel import kmemleak
from harness.debugkernel.kunit import parse_ktap
from harness.vm.console import parse_crashes, primary
from harness.vm.crash import FINDING_KINDS

DATA = Path(__file__).parent / "data"


def _log(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def test_kasan_use_after_free_is_a_poisoning_crash_with_access_and_place():
    crashes = parse_crashes(_log("kasan_uaf.log"), command="rmmod kmh_bad_uaf_exit")
    assert [c.kind for c in crashes] == ["KASAN"]
    crash = crashes[0]
    assert crash.function == "kmh_exit" and crash.module == "kmh_bad_uaf_exit"
    assert crash.title == (
        "BUG: KASAN: use-after-free in kmh_exit+0x2c/0x40 [kmh_bad_uaf_exit]: Read of size 1 by task rmmod/77"
    )
    assert crash.poisons and crash.kind not in FINDING_KINDS
    # The report ends at KASAN's closing rule: the module's own next line is not part of it.
    assert crash.lines[-1].startswith("=====") and "Freed by task" in "\n".join(crash.lines)
    assert primary(crashes) is crash


def test_lockdep_circular_dependency_is_a_finding_with_the_chain():
    crashes = parse_crashes(_log("lockdep_abba.log"), command="insmod kmh_bad_abba.ko")
    assert [c.kind for c in crashes] == ["lockdep"]
    report = crashes[0]
    assert report.title == "WARNING: possible circular locking dependency detected"
    assert report.function == "kmh_take_b_then_a" and report.module == "kmh_bad_abba"
    assert not report.poisons and report.kind in FINDING_KINDS
    text = "\n".join(report.lines)
    assert "the existing dependency chain (in reverse order) is:" in text and "*** DEADLOCK ***" in text


def test_sleep_in_atomic_is_a_finding_blamed_on_the_module():
    crashes = parse_crashes(_log("sleep_atomic.log"), command="insmod kmh_bad_sleep_atomic.ko")
    assert [c.kind for c in crashes] == ["sleep in atomic"]
    report = crashes[0]
    assert report.title.startswith("BUG: sleeping function called from invalid context at ")
    assert report.module == "kmh_bad_sleep_atomic" and report.function == "kmh_init"
    assert not report.poisons
    # The module's next log line comes after the report's end.
    assert not any("loaded: 1234 byte buffer" in line for line in report.lines)


def _layout(module: str, sections: str, ko: str) -> kmemleak.ModuleLayout:
    """MODULE's layout from a section listing and .ko captured from the real debug guest."""
    return kmemleak.ModuleLayout.from_guest(module, (DATA / sections).read_text(), DATA / ko)


def test_kmemleak_report_is_attributed_through_the_recorded_sections():
    leaks = kmemleak.parse_report((DATA / "kmemleak_kmalloc_leak.txt").read_text())
    assert len(leaks) == 1 and leaks[0].size == 2048 and leaks[0].comm == "insmod"
    assert leaks[0].backtrace[2] == "0xffffffffa00080dd"
    layout = _layout("kmh_bad_kmalloc_leak", "kmalloc_leak_sections.txt", "kmh_bad_kmalloc_leak.ko")
    (leak,) = kmemleak.attribute(leaks, [layout])
    assert leak.module == "kmh_bad_kmalloc_leak"
    assert leak.frame.startswith("kmh_init+0xdd/") and leak.frame.endswith(" [kmh_bad_kmalloc_leak]")
    assert leak.frame in leak.backtrace
    # Another module's layout does not claim it, except as the init that failed (no layout).
    other = kmemleak.ModuleLayout("kmh_other")
    (guessed,) = kmemleak.attribute(leaks, [other])
    assert guessed.module == "kmh_other" and "already unloaded" in guessed.frame
    assert kmemleak.attribute(leaks, []) == []


def test_kmemleak_report_of_6_12_has_plain_frames_and_is_attributed():
    """From 6.7 on kmemleak prints ``backtrace (crc ...):`` and frames without ``[<...>]``:
    read with 6.1's pattern, the leak had no frames and went unreported (a silent pass)."""
    leaks = kmemleak.parse_report((DATA / "kmemleak_kmalloc_leak_6.12.txt").read_text())
    assert len(leaks) == 1 and leaks[0].size == 2048 and leaks[0].comm == "insmod"
    assert leaks[0].backtrace[:3] == (
        "__kmalloc_cache_noprof+0x130/0x170",
        "0xffffffffa00180d6",
        "do_one_initcall+0x13d/0x2d0",
    )
    assert not any(frame.startswith(("73", "hex")) for frame in leaks[0].backtrace)
    layout = _layout("kmh_kmalloc_leak", "kmalloc_leak_sections_6.12.txt", "kmh_kmalloc_leak_6.12.ko")
    (leak,) = kmemleak.attribute(leaks, [layout])
    assert leak.module == "kmh_kmalloc_leak"
    assert leak.frame.startswith("kmh_init+0xd6/") and leak.frame.endswith(" [kmh_kmalloc_leak]")


def test_kmemleak_ignores_objects_of_other_tasks():
    text = (DATA / "kmemleak_kmalloc_leak.txt").read_text().replace('comm "insmod"', 'comm "kworker/0:1"')
    assert kmemleak.attribute(kmemleak.parse_report(text), [kmemleak.ModuleLayout("kmh_other")]) == []


def test_kunit_ktap_cases_with_diagnostics_and_skips():
    log = [
        "[   12.1] KTAP version 1",
        "[   12.1] 1..1",
        "[   12.2]     KTAP version 1",
        "[   12.2]     # Subtest: kmh_example",
        "[   12.2]     1..4",
        "[   12.3]     ok 1 kmh_add_test",
        "[   12.4]     # kmh_failing_test: EXPECTATION FAILED at kmh.c:40",
        "[   12.4]     Expected 4 == kmh_add(2, 3), but",
        "[   12.4]         kmh_add(2, 3) == 5",
        "[   12.4]     not ok 2 kmh_failing_test",
        "[   12.4]         # Subtest: kmh_param_test",
        "[   12.4]         ok 1 one",
        "[   12.4]         ok 2 two",
        "[   12.4]     ok 3 kmh_param_test",
        "[   12.4]     ok 4 kmh_skipped_test # SKIP not on this arch",
        "[   12.5] # kmh_example: pass:2 fail:1 skip:1 total:4",
        "[   12.5] not ok 1 kmh_example",
    ]
    cases = parse_ktap(log)
    assert [(c.name, c.status) for c in cases] == [
        ("kmh_example.kmh_add_test", "pass"),
        ("kmh_example.kmh_failing_test", "fail"),
        ("kmh_example.kmh_param_test", "pass"),
        ("kmh_example.kmh_skipped_test", "skip"),
    ]
    assert cases[1].diagnostics[0] == "# kmh_failing_test: EXPECTATION FAILED at kmh.c:40"
    assert cases[3].diagnostics == ("skipped: not on this arch",)


def test_kmemleak_scan_waits_on_the_guests_clock():
    """kmemleak ages objects by the guest's clock: the scan waits there, from the uptime the clear
    command printed, not on the host's."""
    assert kmemleak.guest_uptime("68.67 2.36\n") == 68.67
    assert kmemleak.guest_uptime("") == 0.0 and kmemleak.guest_uptime("garbage") == 0.0
    command = kmemleak.scan_command(68.67)
    assert "t=74.17" in command and command.index("/proc/uptime") < command.index("echo scan")
    assert kmemleak.scan_command(0.0).startswith("echo scan")
