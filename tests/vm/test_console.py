"""The crash parser on real console logs of 6.1 and 6.12 guests (tests/vm/data/console) and on
hand-made edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.vm.console import parse_crashes, primary, strip_prefix

LOGS = Path(__file__).parent / "data" / "console"

# log stem suffix -> (kind, function, module, panicked)
EXPECTED = {
    "null": ("oops", "kmh_null_read", "kmh_null", False),
    "gpf": ("oops", "kmh_gpf_read", "kmh_gpf", False),
    "bug": ("BUG", "kmh_bug_trigger", "kmh_bug", False),
    "panic": ("panic", "kmh_panic_init", "kmh_panic", True),
    "warn": ("WARNING", "kmh_warn_check.constprop.0", "kmh_warn", False),
    "loop": ("soft lockup", "kmh_loop_init", "kmh_loop", False),
    "hung": ("hung task", "kmh_hung_init", "kmh_hung", False),
    "oops-panic": ("oops", "kmh_null_read", "kmh_null", True),
}


@pytest.mark.parametrize("release", ["6.1", "6.12"])
@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_real_logs(release: str, case: str) -> None:
    crash = primary(parse_crashes((LOGS / f"{release}-{case}.log").read_text(), command="insmod x.ko"))
    assert crash is not None
    kind, function, module, panicked = EXPECTED[case]
    assert (crash.kind, crash.function, crash.module, crash.panicked) == (kind, function, module, panicked)
    assert crash.taint == "OE"  # out-of-tree, unsigned: the test modules
    assert crash.command == "insmod x.ko"
    assert crash.call_trace, "every report here has a call trace"
    assert not any(frame.startswith("?") for frame in crash.call_trace)
    assert crash.title == crash.lines[0]


def test_oops_details() -> None:
    crash = primary(parse_crashes((LOGS / "6.1-null.log").read_text()))
    assert crash is not None
    assert crash.title == "BUG: kernel NULL pointer dereference, address: 0000000000000000"
    assert crash.call_trace[:2] == ("do_one_initcall+0x56/0x220", "do_init_module+0x4a/0x1f0")
    assert crash.poisons
    assert any(line.startswith("Oops: 0000 [#1]") for line in crash.lines), "Oops line joins the BUG line"


def test_warning_does_not_poison() -> None:
    crash = primary(parse_crashes((LOGS / "6.12-warn.log").read_text()))
    assert crash is not None and crash.kind == "WARNING" and not crash.poisons
    assert crash.call_trace[0] == "kmh_warn_init+0xe/0xff0 [kmh_warn]"


def test_repeated_lockup_reports_are_separate() -> None:
    crashes = parse_crashes((LOGS / "6.12-loop.log").read_text())
    assert len(crashes) >= 2 and {c.kind for c in crashes} == {"soft lockup"}


def test_panic_after_oops_is_folded_in() -> None:
    crashes = parse_crashes((LOGS / "6.12-oops-panic.log").read_text())
    assert [c.kind for c in crashes] == ["oops"]
    assert crashes[0].panicked
    assert any("Kernel panic - not syncing: Fatal exception" in line for line in crashes[0].lines)


def test_clean_boot_has_no_crash() -> None:
    text = (LOGS / "6.1-null.log").read_text()
    before = text[: text.index("BUG: kernel NULL")]
    assert parse_crashes(before) == []
    assert parse_crashes("") == []


def test_dmesg_lines_without_timestamps() -> None:
    lines = [
        "WARNING: CPU: 1 PID: 42 at drivers/foo/bar.c:12 foo_probe+0x1c/0x40",
        "Modules linked in: foo",
        "CPU: 1 PID: 42 Comm: modprobe Not tainted 6.1.0-56-amd64 #1  Debian 6.1.158-1",
        "RIP: 0010:foo_probe+0x1c/0x40",
        "Call Trace:",
        " <TASK>",
        " really_probe+0xde/0x380",
        " ? driver_probe_device+0x20/0x80",
        " </TASK>",
        "---[ end trace 0000000000000000 ]---",
        "unrelated line",
    ]
    (crash,) = parse_crashes(lines)
    assert crash.kind == "WARNING"
    assert (crash.function, crash.module, crash.taint) == ("foo_probe", "", "")
    assert crash.call_trace == ("really_probe+0xde/0x380",)
    assert "unrelated line" not in crash.lines


def test_two_reports_in_a_row() -> None:
    text = "\n".join(
        [
            "[    5.000001] BUG: scheduling while atomic: insmod/97/0x00000002",
            "[    5.000002] Modules linked in: bad(OE+)",
            "[    6.000001] BUG: unable to handle page fault for address: ffffffffc0123456",
            "[    6.000002] RIP: 0010:bad_init+0x5/0x20 [bad]",
        ]
    )
    crashes = parse_crashes(text)
    assert [c.kind for c in crashes] == ["BUG", "oops"]
    assert crashes[1].function == "bad_init" and crashes[1].module == "bad"


def test_truncated_report_is_still_reported() -> None:
    (crash,) = parse_crashes("[    9.1] kernel BUG at mm/slub.c:379!\n[    9.2] invalid opcode: 0000 [#1]")
    assert crash.kind == "BUG" and crash.call_trace == () and crash.function == ""


def test_strip_prefix() -> None:
    assert strip_prefix("[   12.345678] hello\n") == "hello"
    assert strip_prefix("no prefix") == "no prefix"


def test_warning_in_the_6_18_format_is_found() -> None:
    """Debian's 7.x kernels print "WARNING: m0/x.c:19 at func+0x23/0xff0 [mod], CPU#0: comm/pid"."""
    crashes = parse_crashes((LOGS / "7.3-warn.log").read_text())
    assert [c.kind for c in crashes] == ["WARNING"], crashes
    warning = crashes[0]
    assert (warning.function, warning.module) == ("kmh_init", "kmh_w7") and not warning.poisons
    assert warning.title.startswith("WARNING: m0/kmh_w7.c:19 at kmh_init+0x")
