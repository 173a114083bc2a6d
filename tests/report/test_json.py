"""JSON: complete, with the same keys in every run, step and crash, and a summary block."""

from __future__ import annotations

import json

from harness.report import to_json, write_json

RUN_KEYS = {
    "name",
    "module",
    "kernel",
    "target",
    "source",
    "verdict",
    "duration",
    "failed_step",
    "message",
    "steps",
}
STEP_KEYS = {"name", "status", "duration", "message", "evidence", "crash"}
CRASH_KEYS = {
    "kind",
    "title",
    "summary",
    "function",
    "module",
    "call_trace",
    "taint",
    "command",
    "panicked",
    "poisons",
    "lines",
}


def load(runs, tmp_path, **kwargs) -> dict:
    path = write_json(runs, tmp_path / "out" / "run.json", **kwargs)
    return json.loads(path.read_text(encoding="utf-8"))


def test_summary_block_counts_the_verdicts(runs, tmp_path):
    data = load(runs, tmp_path, elapsed=12.5)
    assert data["format"] == "kmh-report" and data["format_version"] == 1
    assert data["summary"] == {
        "total": 6,
        "passed": 1,
        "failed": 3,
        "crashed": 1,
        "timed_out": 1,
        "errors": 0,
        "interrupted": 0,
        "skipped": 0,
        "ok": False,
        "duration": 12.5,
        "wall_clock": 12.5,
        "module_time": 41.84,
        "kernels": ["6.1.0-26-amd64", "6.12.9+bpo-amd64"],
        "targets": ["bookworm", "bookworm-backports"],
        "line": "1 passed, 3 failed, 1 crashed, 1 timed out in 12.5s",
    }


def test_keys_are_the_same_everywhere(runs, tmp_path):
    data = load(runs, tmp_path)
    crashes = 0
    for run in data["runs"]:
        assert set(run) == RUN_KEYS
        for step in run["steps"]:
            assert set(step) == STEP_KEYS
            if step["crash"] is not None:
                crashes += 1
                assert set(step["crash"]) == CRASH_KEYS
    assert crashes == 2


def test_everything_is_there(runs, tmp_path):
    data = load(runs, tmp_path)
    for run, original in zip(data["runs"], runs, strict=True):
        assert (run["module"], run["kernel"], run["source"], run["verdict"]) == (
            original.module,
            original.kernel,
            original.source,
            original.verdict,
        )
        assert [s["name"] for s in run["steps"]] == [s.name for s in original.steps]
        assert [s["status"] for s in run["steps"]] == [s.status for s in original.steps]
    broken = data["runs"][1]
    assert broken["failed_step"] == "build" and broken["message"] == "1 error in broken.c"
    assert "‘undeclared_thing’ undeclared" in broken["steps"][1]["evidence"]
    assert data["runs"][0]["failed_step"] is None


def test_crash_fields_are_complete_and_raw_text_is_kept(runs, tmp_path):
    crash = load(runs, tmp_path)["runs"][3]["steps"][3]["crash"]
    assert crash["kind"] == "oops"
    assert crash["function"] == "null_deref_init" and crash["module"] == "null_deref"
    assert (
        len(crash["call_trace"]) == 10
        and crash["call_trace"][0] == "null_deref_init+0x11/0x1000 [null_deref]"
    )
    assert crash["taint"] == "OE" and crash["poisons"] is True and crash["panicked"] is False
    assert crash["summary"].startswith("oops in null_deref_init [null_deref]: BUG: kernel NULL")
    # JSON can hold control characters, so the console is kept exactly, except the one thing
    # no UTF-8 text can hold: the lone surrogate of an undecodable byte.
    assert crash["lines"][0].endswith("0000000000000000\r")
    assert "\x1b[31mc7" in crash["lines"][5] and "\x00" in crash["lines"][5]
    assert crash["lines"][6] == "[   12.345900] raw byte from a broken console: \\xff end"


def test_to_json_is_plain_data(runs):
    data = to_json(runs)
    assert json.loads(json.dumps(data)) == data
    assert to_json([])["summary"]["total"] == 0


def test_a_crash_from_the_console_parser_is_kept_whole(parsed_crash_run, tmp_path):
    (run,) = load([parsed_crash_run], tmp_path)["runs"]
    step = run["steps"][6]
    assert step["crash"]["kind"] == "BUG" and step["crash"]["panicked"] is True
    assert step["crash"]["lines"][-1] == "---[ end Kernel panic - not syncing: Fatal exception ]---"
    assert step["evidence"].startswith("[    3.100000] kmh-agent: running rmmod bug_exit\r\n")
    assert run["failed_step"] == "unload" and run["verdict"] == "crash"
