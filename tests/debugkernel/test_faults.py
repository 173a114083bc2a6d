"""The fault-injection sweep's parsing, on output captured from the real bookworm debug target:
kmh_faultctl's record of each load, the stack failslab prints for the injected failure (whose
allocation site it names), kmemleak's objects tied to a load by insmod's PID, and what a target
must have. The sweep itself runs in the VM in test_debug_target.py (faults_clean, unwind_leak).
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.debugkernel import faults, kmemleak
from harness.vm.console import parse_crashes

DATA = Path(__file__).parent / "data"


def _loads() -> dict[int, dict[str, str]]:
    """faults_misc_sweep.txt: loads of the misc template (misc_register in init), each with
    its N, exit status, stdout, stderr and kernel log, as kmh's sweep runs them."""
    loads: dict[int, dict[str, str]] = {}
    text = (DATA / "faults_misc_sweep.txt").read_text()
    for block in re.split(r"(?m)^(?==== N=)", text):
        head = re.match(r"=== N=(\d+) exit=(\d+)\n", block)
        if not head:
            continue
        parts = re.split(r"(?m)^--- (stdout|stderr|dmesg)\n", block[head.end() :])
        load = dict(zip(parts[1::2], parts[2::2], strict=True))
        load["exit"] = head.group(2)
        loads[int(head.group(1))] = load
    return loads


def test_the_helpers_record_says_whether_the_nth_point_of_init_was_reached():
    loads = _loads()
    first = faults.parse_record(loads[1]["stdout"])
    assert first == faults.Record(
        seen=1, fired=True, remaining=0, ret=-12, pid=30, site="device_create_groups_vargs+0x44/0x11a"
    )
    coped = faults.parse_record(loads[25]["stdout"])  # a uevent failed: misc_register goes on
    assert coped is not None and coped.fired and coped.ret == 0 and loads[25]["exit"] == "0"
    clean = faults.parse_record(loads[29]["stdout"])
    # Init reached 28 points: N = 29 was never reached, init ran clean; the sweep ends there.
    assert clean is not None and not clean.fired and 29 - clean.remaining == 28 and clean.site == ""
    assert faults.parse_record("insmod: ERROR: could not insert module\n") is None


def test_the_site_is_the_kernel_function_that_allocated_for_init_and_the_module_frame():
    loads = _loads()
    site = faults.allocation_site(faults.injected_frames(loads[7]["dmesg"].splitlines()), "kmh_misc_faults")
    assert site == (
        "__kernfs_new_node.constprop.0+0x85/0x371 in misc_register+0x157/0x23e "
        "called from kmh_init+0xd/0x1000 [kmh_misc_faults]"
    )
    first = faults.injected_frames(loads[1]["dmesg"].splitlines())
    assert faults.allocation_site(first, "kmh_misc_faults").startswith("device_create_groups_vargs+0x44/")
    # An injected failure is not a crash, and its stack does not end the log's parsing.
    assert parse_crashes(loads[7]["dmesg"].splitlines()) == []


def test_a_quiet_point_prints_no_stack_and_the_helper_names_it():
    """Every other point is kmemleak's own record of the allocation before (__GFP_NOWARN): no
    stack is printed, the helper's allocation tracepoints name the caller all the same."""
    loads = _loads()
    assert faults.injected_frames(loads[2]["dmesg"].splitlines()) is None
    assert faults.allocation_site(None, "kmh_misc_faults") == ""
    record = faults.parse_record(loads[2]["stdout"])
    assert record is not None and record.site == "__create_object+0x5a/0x51a" and record.ret == 0
    injection = faults.Injection(2, record.pid, record.site, "", quiet=True)
    assert injection.describe() == (
        "allocation #2 of init failed in __create_object+0x5a/0x51a quietly (a __GFP_NOWARN allocation: "
        "no stack, kmemleak's record of the allocation before): init went on: loaded, then unloaded; "
        "nothing left behind"
    )


def test_an_allocation_of_init_itself_is_named_by_its_own_frame():
    lines = (DATA / "failslab_unwind_leak.log").read_text().splitlines()
    frames = faults.injected_frames(lines)
    assert frames is not None and frames[0] == "dump_stack_lvl+0x4c/0x5f"
    assert faults.allocation_site(frames, "kmh_unwind_leak") == "kmh_init+0x5b/0x1000 [kmh_unwind_leak]"


def test_an_allocation_outside_the_module_names_no_module_frame():
    """A failure in exec (what counting from the start of insmod used to hit)."""
    frames = faults.injected_frames((DATA / "failslab_exec.log").read_text().splitlines())
    assert faults.allocation_site(frames, "kmh_kmem") == "getname_flags+0x32/0x1ee"


def test_kmemleak_objects_carry_the_pid_that_ties_them_to_a_load():
    report = (DATA / "kmemleak_unwind_leak.txt").read_text()
    leaks = kmemleak.parse_report(report)
    assert [(leak.size, leak.comm, leak.pid) for leak in leaks] == [(2048, "insmod", 46)]
    found = kmemleak.attribute(leaks, [kmemleak.ModuleLayout("kmh_unwind_leak")])
    assert found[0].pid == 46 and found[0].module == "kmh_unwind_leak"
    injection = faults.Injection(3, 46, "kmh_init+0x5b/0x1000 [kmh_unwind_leak]", "Cannot allocate memory")
    injection.leftovers.append("kmemleak: 1 object(s) (2048 bytes) allocated by kmh_unwind_leak never freed")
    assert injection.describe().startswith(
        "allocation #3 of init failed in kmh_init+0x5b/0x1000 [kmh_unwind_leak]: "
        "init failed: Cannot allocate memory; left behind: kmemleak: 1 object(s) (2048 bytes)"
    )


def test_a_target_lacking_fault_injection_is_named_by_its_missing_options(kernel_61, kernel_debug):
    """Debian's stock 6.1 has tracepoints but no fault injection: the sweep says so in one line."""
    options = faults.missing_options(kernel_61)
    assert options and set(options) <= {f"CONFIG_{option}" for option in faults.REQUIRED}
    assert "CONFIG_FAILSLAB" in options and "CONFIG_TRACEPOINTS" not in options
    assert faults.missing_options(kernel_debug) == []


def test_the_failed_inits_raw_frame_in_kmemleak_is_named_through_the_helpers_record():
    """One load of unwind_leak with its 3rd point failing, then kmemleak's report (same guest):
    the PID ties the object to the load, the recorded init address names its raw frame."""
    text = (DATA / "faults_unwind_leak_load.txt").read_text()
    stdout = text.split("--- stdout\n")[1].split("--- stderr\n")[0]
    record = faults.parse_record(stdout)
    assert record is not None and record.fired and record.ret == -12 and record.pid == 31
    assert record.site == "kmh_init+0x5b/0x1000 [kmh_unwind_leak]"
    assert record.init_address == 0xFFFFFFFFA0010000
    assert record.init_symbol == "kmh_init+0x0/0x1000 [kmh_unwind_leak]"
    (leak,) = kmemleak.parse_report(text.split("=== kmemleak\n")[1])
    assert leak.pid == record.pid and leak.backtrace[2] == "0xffffffffa0010023"
    named = [record.name_frame(frame) for frame in leak.backtrace]
    assert named[2] == "kmh_init+0x23/0x1000 [kmh_unwind_leak]"
    assert named[:2] + named[3:] == list(leak.backtrace[:2] + leak.backtrace[3:])
    assert record.name_frame("0xffffffffa0011000") == "0xffffffffa0011000"  # past init's end
