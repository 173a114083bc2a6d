"""Issue 13 regressions: spec values of the wrong type or range are one-line errors, never guesses.

Each case was accepted (``timeout = 0``, ``-5``, ``nan``: a bogus TIMEOUT later), misread
(``reload = "false"`` is a non-empty string, so it read as true) or ended in a traceback
(``timeout = "ten"``, a spec file that is not UTF-8). The CLI cases run the real ``kmh`` script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.lifecycle.spec import load_spec

KMH = str(Path(sys.executable).parent / "kmh")


def kmh(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KMH, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def write_spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text('[module]\ntemplate = "hello"\n' + body)
    return path


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("[load]\ntimeout = 0\n", "timeout", "positive number of seconds"),
        ("[load]\ntimeout = -5\n", "timeout", "positive number of seconds"),
        ("[load]\ntimeout = nan\n", "timeout", "positive number of seconds"),
        ("[load]\ntimeout = inf\n", "timeout", "positive number of seconds"),
        ('[load]\ntimeout = "ten"\n', "timeout", "positive number of seconds"),
        ("[load]\ntimeout = true\n", "timeout", "positive number of seconds"),
        ('[expect]\nreload = "false"\n', "reload", "true or false"),
        ("[expect]\nreload = 0\n", "reload", "true or false"),
        ("[load]\nmethod = 1\n", "method", "string"),
        ("[expect]\nexercise = 3\n", "exercise", "string"),
        ("[expect]\nload_dmesg = [1, 2]\n", "load_dmesg", "string"),
        ('[expect]\nload_dmesg = "hello"\n', "load_dmesg", "list"),
        ('[expect]\nholders = { a = "b" }\n', "holders", "list"),
        ("[expect]\nparams = { a = { b = 1 } }\n", "params", "value"),
        ("[load]\nargs = { a = { b = 1 } }\n", "args", "value"),
        ("[load]\nargs = { a = nan }\n", "args", "value"),
        ("kernels = [6]\n", "kernels", "string"),
        ("[outcome]\nverdict = 1\n", "verdict", "string"),
    ],
)
def test_wrong_types_and_ranges_are_refused(tmp_path: Path, body: str, key: str, message: str) -> None:
    # Top-level keys must come before the first table in TOML.
    if not body.startswith("["):
        path = tmp_path / "m.toml"
        path.write_text(body + '[module]\ntemplate = "hello"\n')
    else:
        path = write_spec(tmp_path, body)
    with pytest.raises(HarnessError) as caught:
        load_spec(path)
    text = caught.value.message
    assert str(path) in text and key in text and message in text, text
    assert "\n" not in text


def test_good_values_still_parse(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, "[load]\ntimeout = 2.5\n[expect]\nreload = false\n"))
    assert spec.timeout == 2.5 and spec.expect.reload is False
    assert load_spec(write_spec(tmp_path, "[load]\ntimeout = 7\n")).timeout == 7.0


def test_a_spec_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[module]\ntemplate = "hello"\n# auteur: Fran\xe7ois\n')
    with pytest.raises(HarnessError, match="not UTF-8"):
        load_spec(path)


def test_a_spec_that_is_a_directory_or_a_fifo_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a regular file"):
        load_spec(tmp_path)
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    with pytest.raises(HarnessError, match="not a regular file"):
        load_spec(fifo)


@pytest.mark.parametrize(
    "content",
    [b'[module]\ntemplate = "hello"\n[load]\ntimeout = "ten"\n', b'[module]\ntemplate = "h\xe9llo"\n'],
)
def test_cli_exits_2_with_one_line_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    result = kmh("run", str(path), "--dry-run")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kmh: error: ") and str(path) in lines[0]


def test_run_params_without_template_is_an_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "")
    result = kmh("run", str(spec), "-p", "greeting=hi", "--dry-run")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "--template" in result.stderr and "Traceback" not in result.stderr
    # With a template the same parameter is used, and the plan is printed.
    ok = kmh("run", "--template", "hello", "-p", "greeting=hi", "--dry-run")
    assert ok.returncode == 0, ok.stderr
