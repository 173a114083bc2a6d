"""The terminal summary and progress lines: what a person reads at the end of ``kmh run``."""

from __future__ import annotations

import io
import re
import threading

from harness.lifecycle.result import ModuleRun, StepResult
from harness.report import ProgressPrinter, render_summary, tally

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def table_rows(summary: str) -> list[list[str]]:
    table = summary.split("\n\n")[0]
    return [line.split()[:4] for line in table.splitlines()[1:]]


def test_table_has_one_row_per_run_with_upper_case_verdict_and_time(runs):
    rows = table_rows(render_summary(runs))
    assert rows == [
        ["hello_kmh", "6.1.0-26-amd64", "PASS", "1.8s"],
        ["broken", "6.12.9+bpo-amd64", "FAIL", "2.3s"],
        ["wrong_kernel", "6.12.9+bpo-amd64", "FAIL", "0.4s"],
        ["null_deref", "6.1.0-26-amd64", "CRASH", "3.2s"],
        ["busy_loop", "6.12.9+bpo-amd64", "TIMEOUT", "31.5s"],
        ["leaky_chrdev", "6.1.0-26-amd64", "FAIL", "2.6s"],
    ]


def test_count_line_states_each_verdict_and_the_time(runs):
    summary = render_summary(runs)
    assert summary.rstrip().splitlines()[-1] == "1 passed, 3 failed, 1 crashed, 1 timed out in 41.8s"
    assert render_summary(runs, elapsed=12.04).rstrip().endswith("in 12.0s")
    assert render_summary([]).strip() == "no modules ran in 0.0s"


def test_passing_runs_have_no_evidence_section(runs, by_module):
    summary = render_summary([by_module["hello_kmh"]])
    assert summary.count("\n\n") == 1  # table, count line: nothing between
    assert "PASS hello_kmh" not in summary


def test_build_failure_shows_the_compiler_diagnostics_indented(by_module):
    summary = render_summary([by_module["broken"]])
    assert "FAIL broken on 6.12.9+bpo-amd64 (modules/broken.toml)" in summary
    assert "  build: fail: 1 error in broken.c" in summary
    assert "    | modules/broken/broken.c:8:19: error: ‘undeclared_thing’ undeclared" in summary
    assert "    |       |                   ^~~~~~~~~~~~~~~~" in summary
    # Skipped steps are not failures and are not listed as evidence.
    assert "reload:" not in summary


def test_crash_shows_summary_taint_command_and_top_frames(by_module):
    summary = render_summary([by_module["null_deref"]], max_frames=3)
    lines = summary.splitlines()
    start = lines.index("CRASH null_deref on 6.1.0-26-amd64 (modules/null_deref.toml)")
    block = lines[start : start + 9]
    assert block[1] == "  load: crash: insmod null_deref.ko crashed the kernel"
    assert block[2] == (
        "    oops in null_deref_init [null_deref]: "
        "BUG: kernel NULL pointer dereference, address: 0000000000000000"
    )
    assert block[3] == "    tainted: OE; during: insmod /lib/modules/6.1.0-26-amd64/extra/null_deref.ko"
    assert block[4:9] == [
        "    call trace:",
        "      null_deref_init+0x11/0x1000 [null_deref]",
        "      do_one_initcall+0x58/0x300",
        "      do_init_module+0x4c/0x1f0",
        "      ... 7 more frames",
    ]


def test_cleanup_failure_names_every_failed_step_and_the_leftovers(by_module):
    summary = render_summary([by_module["leaky_chrdev"]])
    assert "  cleanup: fail: 3 things left behind after rmmod" in summary
    assert "    | + /proc/devices: 240 leaky_chrdev" in summary
    assert "  reload: fail: insmod failed: Device or resource busy (EBUSY)" in summary


def test_long_evidence_is_cut_with_a_pointer_to_the_full_reports(by_module):
    run = by_module["leaky_chrdev"]
    run.steps[-2].evidence = "\n".join(f"+ /dev/leak{i}" for i in range(100))
    summary = render_summary([run], max_evidence_lines=5)
    assert "    | + /dev/leak4" in summary
    assert "/dev/leak5" not in summary
    assert "    | ... 95 more lines" in summary


def test_control_characters_never_reach_the_terminal(by_module):
    run = by_module["leaky_chrdev"]
    run.steps[-2].evidence = "bell\x07 escape\x1b]0;title\x07 nul\x00 cr\rend \x1b[31mred\x1b[0m"
    summary = render_summary([run])
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", summary)
    assert "bell\\x07 escape\\x1b]0;title\\x07 nul\\x00 cr\\x0dend red" in summary


def test_colour_only_when_asked(runs):
    plain = render_summary(runs)
    coloured = render_summary(runs, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[1;31mCRASH" in coloured
    assert "\x1b[32mPASS" in coloured
    assert ANSI.sub("", coloured) == plain


def test_progress_on_a_pipe_is_one_plain_line_per_finished_run(runs):
    stream = io.StringIO()
    printer = ProgressPrinter(stream, total=20)
    for index, run in enumerate(runs, start=1):
        for step in run.steps:
            printer.step(run, step)
        printer.finished(run)
        assert printer.done == index
    printer.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(runs)
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert re.fullmatch(r"\[ 1/20\] hello_kmh +6\.1\.0-26-amd64 +PASS +1\.8s", lines[0])
    assert re.fullmatch(r"\[ 4/20\] null_deref +6\.1\.0-26-amd64 +CRASH +3\.2s  load: insmod .*", lines[3])
    assert lines[1].endswith("FAIL      2.3s  build: 1 error in broken.c")


def test_progress_on_a_terminal_keeps_a_live_status_line_and_clears_it(by_module):
    stream = FakeTTY()
    run = by_module["hello_kmh"]
    with ProgressPrinter(stream, total=2, color=False) as printer:
        printer.step(run, run.steps[0])
        assert stream.getvalue() == "\r\x1b[K[0/2 done] hello_kmh on 6.1.0-26-amd64: render pass"
        printer.finished(run)
        line = "[1/2] hello_kmh          6.1.0-26-amd64       PASS      1.8s"
        assert stream.getvalue().endswith(f"\r\x1b[K{line}\n")
        printer.step(run, run.steps[1])
    assert stream.getvalue().endswith("build pass\r\x1b[K")


def test_progress_lines_stay_whole_when_workers_report_at_once(runs):
    stream = io.StringIO()
    printer = ProgressPrinter(stream, total=len(runs) * 50)

    def worker(run: ModuleRun) -> None:
        for _ in range(50):
            printer.finished(run)

    threads = [threading.Thread(target=worker, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 300
    counters = sorted(int(re.match(r"\[\s*(\d+)/300\]", line).group(1)) for line in lines)
    assert counters == list(range(1, 301))


def test_tally_counts_match_the_verdicts(runs):
    counts = tally(runs)
    assert (counts.passed, counts.failed, counts.crashed, counts.timed_out) == (1, 3, 1, 1)
    assert counts.total == 6 and not counts.ok
    assert tally(runs[:1]).ok


def test_timeout_without_trace_shows_the_console_tail(by_module):
    summary = render_summary([by_module["busy_loop"]])
    assert "    | [   52.100000] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [insmod:101]" in summary


def test_a_crash_from_the_console_parser_reads_well(parsed_crash_run):
    summary = render_summary([parsed_crash_run])
    assert "CRASH bug_exit on 6.12.9+bpo-amd64 (modules/bad/bug_exit.toml)" in summary
    assert "    BUG in bug_exit_exit [bug_exit]: kernel BUG at /build/bug_exit/bug_exit.c:12!" in summary
    assert "kernel panicked; during: rmmod bug_exit" in summary
    assert "      __do_sys_delete_module+0x1a0/0x2f0" in summary
    assert "    | [  OK  ] Reached target\\x00 multi-user" in summary
    assert "\r" not in summary and "\x1b" not in summary


def test_a_run_whose_build_came_from_the_build_cache_says_so(runs):
    """A fast pass must not pass for a fresh build: the table's DETAIL says the .ko was cached."""
    import dataclasses

    hello = runs[0]
    message = "built against 6.1.0-26-amd64, cached (1 of 1 from the build cache)"
    steps = [
        StepResult("build", "pass", 0.02, message) if step.name == "build" else step for step in hello.steps
    ]
    cached = dataclasses.replace(hello, steps=steps)
    assert render_summary([cached]).splitlines()[1].endswith("build cached")
    assert not render_summary([hello]).splitlines()[1].endswith("build cached")


def test_a_passing_fault_sweep_still_lists_what_it_failed():
    """The sweep's list (each N, its allocation site, how init coped) is its result: the
    terminal shows it for a passing run too (text from a real sweep on the debug kernel)."""
    evidence = "\n".join(
        [
            "allocation #1 of init failed in kmh_init+0x23/0x1000 [kmh_faults_clean]: init failed: "
            "insmod: ERROR: could not insert module kmh_faults_clean.ko: Cannot allocate memory (ENOMEM); "
            "nothing left behind",
            "allocation #2 of init failed in __create_object+0x5a/0x51a quietly (a __GFP_NOWARN allocation: "
            "no stack, kmemleak's record of the allocation before): init went on: loaded, then unloaded; "
            "nothing left behind",
            "load #3: init ran clean (2 point(s) reached, none failed)",
        ]
    )
    steps = [
        StepResult("load", "pass", message="loaded"),
        StepResult("faults", "pass", message="fault injection: init reaches 2 point(s)", evidence=evidence),
    ]
    run = ModuleRun("kmh_faults_clean", "modules/debug/faults_clean.toml", "6.1.192-kmh-debug", steps=steps)
    summary = render_summary([run])
    assert "PASS kmh_faults_clean" in summary and "faults: pass: fault injection" in summary
    assert "| allocation #1 of init failed in kmh_init+0x23/0x1000 [kmh_faults_clean]" in summary
    assert "load: pass" not in summary  # other passing steps stay out of it


def test_a_skipped_fault_sweep_says_which_options_the_kernel_lacks():
    why = (
        "fault injection needs CONFIG_FAULT_INJECTION, CONFIG_FAILSLAB, CONFIG_FAULT_INJECTION_DEBUG_FS, "
        "which 6.1.0-56-amd64 lacks (try bookworm:debug)"
    )
    steps = [StepResult("load", "pass", message="loaded"), StepResult("faults", "skip", message=why)]
    run = ModuleRun("kmh_faults_clean", "modules/debug/faults_clean.toml", "6.1.0-56-amd64", steps=steps)
    summary = render_summary([run])
    assert f"faults: skip: {why}" in summary and run.verdict == "pass"
