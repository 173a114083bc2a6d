"""``kmh run --kernel A --kernel B --html``: a real two-kernel run through the CLI, its grid in
the terminal summary and in the HTML report, each result naming its kernel."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.paths import REPO_ROOT

pytestmark = pytest.mark.vm


def test_two_kernel_run_has_a_grid_everywhere(tmp_path, kernel_61, kernel_store):
    sid = kernel_store.ensure("sid")
    html, json_file = tmp_path / "report.html", tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "modules/hello.toml",
        "modules/bad/init_error.toml",
    ]
    command += ["--kernel", "bookworm", "--kernel", "sid", "--html", str(html), "--json", str(json_file)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stdout + result.stderr  # init_error fails, as it promises
    lines = result.stdout.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split() == ["MODULE", kernel_61.release, sid.release]
    )
    assert lines[header + 1].split() == ["hello_kmh", "PASS", "PASS"]
    assert lines[header + 2].split()[:4] == ["kmh_bad_init", "FAIL", "load:", "/sbin/insmod"]
    runs = json.loads(json_file.read_text())["runs"]
    assert sorted((r["module"], r["kernel"]) for r in runs) == sorted(
        (m, k) for m in ("hello_kmh", "kmh_bad_init") for k in (kernel_61.release, sid.release)
    )
    document = html.read_text()
    assert document.count('<td class="cell pass"') == 2 and document.count('<td class="cell fail"') == 2
    assert f'<th class="kernel">{sid.release}</th>' in document
