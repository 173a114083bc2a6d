"""An interrupted ``kmh run`` keeps what finished, marks the rest, stops its children, exits 128+N.

Real runs of the real command: a module that passes, then one whose init never returns (its load
would time out after 8 s); the signal arrives while the second is in the guest, or, in the
SIGTERM-early case, while the host is still building.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KMH = [sys.executable, "-m", "harness.cli"]

pytestmark = [pytest.mark.vm, pytest.mark.kbuild]


def _start(tmp_path: Path, *specs: str) -> subprocess.Popen[str]:
    reports = ["--junit", str(tmp_path / "r.xml"), "--json", str(tmp_path / "r.json")]
    return subprocess.Popen(
        [*KMH, "run", *specs, "--kernel", "bookworm", *reports],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _children_left(pid: int) -> list[str]:
    """QEMU guests (their temp dir names the harness pid) and kbuild runs still alive."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [
        line
        for line in out.splitlines()
        if f"kmh-vm-{pid}-" in line
        or ("make" in line and "M=" in line and ("/batch-" in line or "/umbrella" in line))
    ]


def _temp_dirs(pid: int) -> set[str]:
    """The run's own temp dirs (named after its pid)."""
    return {path.name for path in Path(tempfile.gettempdir()).glob(f"kmh-run-{pid}-*")}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_the_guest_phase_keeps_the_finished_result(tmp_path: Path, signum: int) -> None:
    proc = _start(tmp_path, "modules/hello.toml", "modules/bad/loop_init.toml")
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        if "hello_kmh" in line and "PASS" in line:
            break
        assert time.monotonic() < deadline, "hello never passed"
    else:
        pytest.fail(f"the run ended before hello passed: {proc.wait()}")
    time.sleep(1.5)  # kmh_loop_init's insmod is now spinning in the guest
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and "interrupted by" in stderr
    data = json.loads((tmp_path / "r.json").read_text())
    verdicts = {run["module"]: run["verdict"] for run in data["runs"]}
    assert verdicts == {"hello_kmh": "pass", "kmh_loop_init": "interrupted"}, verdicts
    assert data["summary"]["interrupted"] == 1
    junit = ET.parse(tmp_path / "r.xml").getroot()
    assert junit.get("tests") is not None and "interrupted" in ET.tostring(junit, encoding="unicode")
    time.sleep(0.5)
    assert _children_left(proc.pid) == []
    assert _temp_dirs(proc.pid) == set(), "the run's temp dir was left behind"


def test_sigterm_early_stops_everything_and_reports_every_module(tmp_path: Path) -> None:
    # A warm run of hello and chardev can be over within the second: loop_init (whose init never
    # returns) keeps the run going, so the signal always lands in it.
    proc = _start(tmp_path, "modules/hello.toml", "modules/chardev.toml", "modules/bad/loop_init.toml")
    time.sleep(1.0)  # rendering, building or booting: wherever it is, it must stop cleanly
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["runs"]) == 3, "every planned module has a result"
    assert all(run["verdict"] in ("pass", "interrupted") for run in data["runs"]), data["runs"]
    assert "interrupted" in {run["verdict"] for run in data["runs"]}
    time.sleep(0.5)
    assert _children_left(proc.pid) == []
    assert _temp_dirs(proc.pid) == set()
