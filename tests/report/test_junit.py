"""JUnit XML: parsed back the way a CI reporter would, counts checked, hostile text escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from harness.lifecycle.result import StepResult
from harness.report import render_junit, write_junit

#: Characters XML 1.0 does not allow anywhere in a document, escaped or not.
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def parse(runs, tmp_path) -> ET.Element:
    path = write_junit(runs, tmp_path / "reports" / "junit.xml")
    raw = path.read_bytes()
    assert raw.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert not FORBIDDEN.search(raw.decode("utf-8"))
    # Character references to forbidden characters (&#0; &#27;) are rejected by expat too.
    assert not re.search(rb"&#(x0*[0-8bcef]|x0*1[0-9a-f]|0*([0-8]|1[1-24-9]|2[0-9]|3[01]));", raw, re.I)
    return ET.parse(path).getroot()


def test_one_suite_per_module_and_kernel_one_case_per_step(runs, tmp_path):
    root = parse(runs, tmp_path)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [suite.get("name") for suite in suites] == [
        "hello_kmh on 6.1.0-26-amd64 (bookworm)",
        "broken on 6.12.9+bpo-amd64 (bookworm-backports)",
        "wrong_kernel on 6.12.9+bpo-amd64 (bookworm-backports)",
        "null_deref on 6.1.0-26-amd64 (bookworm)",
        "busy_loop on 6.12.9+bpo-amd64 (bookworm-backports)",
        "leaky_chrdev on 6.1.0-26-amd64 (bookworm)",
    ]
    for suite, run in zip(suites, runs, strict=True):
        cases = suite.findall("testcase")
        assert [case.get("name") for case in cases] == [step.name for step in run.steps]
        assert {case.get("classname") for case in cases} == {f"kmh.{run.kernel}.{run.module}"}
        assert int(suite.get("tests")) == len(cases)
        assert float(suite.get("time")) == run.duration
        properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
        prefix = f"kmh.{run.kernel}.{run.module}"
        assert properties == {
            f"{prefix}.module": run.module,
            f"{prefix}.kernel": run.kernel,
            f"{prefix}.target": run.target,
            f"{prefix}.source": run.source,
            f"{prefix}.verdict": run.verdict,
        }


def test_counts_match_the_elements_at_every_level(runs, tmp_path):
    root = parse(runs, tmp_path)
    for node in [root, *root.findall("testsuite")]:
        cases = list(node.iter("testcase"))
        assert int(node.get("tests")) == len(cases)
        assert int(node.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(node.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.get("skipped")) == sum(1 for c in cases if c.find("skipped") is not None)
    # build, check, cleanup + reload fail; one crash, one timeout; 7 + 6 + 5 + 5 skipped.
    assert (root.get("failures"), root.get("errors")) == ("4", "2")
    assert sum(int(suite.get("skipped")) for suite in root.findall("testsuite")) == 23
    assert "skipped" not in root.attrib  # junit-10.xsd does not allow it on testsuites
    assert root.get("tests") == str(sum(len(run.steps) for run in runs))


def test_build_failure_carries_the_diagnostics(runs, tmp_path):
    root = parse(runs, tmp_path)
    (failure,) = root.find("testsuite[@name='broken on 6.12.9+bpo-amd64 (bookworm-backports)']").iter(
        "failure"
    )
    assert failure.get("message") == "1 error in broken.c"
    assert failure.get("type") == "fail"
    assert "broken.c:8:19: error: ‘undeclared_thing’ undeclared" in failure.text
    assert "      |                   ^~~~~~~~~~~~~~~~" in failure.text


def test_crash_is_an_error_on_the_step_that_caused_it(runs, tmp_path):
    root = parse(runs, tmp_path)
    suite = root.find("testsuite[@name='null_deref on 6.1.0-26-amd64 (bookworm)']")
    load = suite.find("testcase[@name='load']")
    error = load.find("error")
    assert error.get("type") == "oops"
    assert error.get("message") == "insmod null_deref.ko crashed the kernel"
    assert "oops in null_deref_init [null_deref]: BUG: kernel NULL pointer dereference" in error.text
    assert "  syscall_trampoline+0x10/0x20" in error.text  # the whole trace, not just the top
    assert "Tainted: OE" in error.text
    console = load.find("system-out").text
    # Colour codes removed, NUL and undecodable byte made visible, CR gone, markup escaped back.
    assert "Code: 00 00 c7 04 25 00 00 00 00 2a 00 00 00 <c7> \\x00 ff" in console
    assert "raw byte from a broken console: \\xff end" in console
    assert "\r" not in console
    skipped = [case.find("skipped").get("message") for case in suite.findall("testcase")[4:]]
    assert skipped == ["the VM crashed"] * 5


def test_timeout_is_an_error_of_type_timeout(runs, tmp_path):
    root = parse(runs, tmp_path)
    load = root.find(
        "testsuite[@name='busy_loop on 6.12.9+bpo-amd64 (bookworm-backports)']/testcase[@name='load']"
    )
    assert load.find("error").get("type") == "timeout"
    assert "soft lockup - CPU#0 stuck for 26s!" in load.find("system-out").text


def test_every_forbidden_character_in_any_field_still_parses(by_module, tmp_path):
    hostile = "".join(chr(c) for c in range(0x20)) + "\x7f\ud800\udcfe\ufffe\uffff <&>\"' ]]>"
    run = by_module["leaky_chrdev"]
    run.module = "leaky" + "\x01"
    run.source = hostile
    run.steps.append(StepResult("exercise" + "\x1b", "pass", message=hostile, evidence=hostile))
    run.steps[-2].message = hostile
    run.steps[-2].evidence = hostile
    root = parse([run], tmp_path)
    suite = root.find("testsuite")
    assert suite.get("name") == "leaky\\x01 on 6.1.0-26-amd64 (bookworm)"
    failures = list(suite.iter("failure"))
    assert len(failures) == 2
    assert "<&>\"' ]]>" in failures[1].text
    assert "\\x00\\x01" in failures[1].text and "\\udcfe" not in failures[1].text
    assert "\\xfe" in failures[1].text  # the undecodable byte behind the surrogate
    out = suite.findall("testcase")[-1].find("system-out").text
    assert out.endswith(" <&>\"' ]]>")


def test_no_runs_is_still_a_valid_document(tmp_path):
    root = parse([], tmp_path)
    assert root.get("tests") == "0" and root.findall("testsuite") == []


def test_render_and_write_produce_the_same_document(runs, tmp_path):
    written = ET.tostring(parse(runs, tmp_path))
    rendered = ET.tostring(ET.fromstring(render_junit(runs).encode("utf-8")))
    assert written == rendered


def test_a_crash_from_the_console_parser_parses_back(parsed_crash_run, tmp_path):
    root = parse([parsed_crash_run], tmp_path)
    unload = root.find("testsuite/testcase[@name='unload']")
    error = unload.find("error")
    assert error.get("type") == "BUG"
    assert "kernel BUG at /build/bug_exit/bug_exit.c:12!" in error.text
    assert "[  OK  ] Reached target\\x00 multi-user" in error.text  # the console tail, escaped
    assert "Kernel panic - not syncing: Fatal exception" in unload.find("system-out").text
    assert root.get("errors") == "1" and root.find("testsuite").get("skipped") == "2"
