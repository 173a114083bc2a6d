"""``kmh templates`` and ``kmh new`` through the real entry point: output, files, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.templates import catalogue


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_templates_lists_every_template_and_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "templates")
    assert code == 0
    for template in catalogue():
        assert template.name in out
        if not template.is_preset:
            for param in template.params:
                assert param.name in out
    assert "bad_chardev_leak" in out and "leak=all" in out


def test_templates_shows_one_in_detail(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "templates", "bad_hold_ref")
    assert code == 0
    assert "Module is in use" in out
    assert "hold-ref" in out


def test_new_writes_the_module(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "dev"
    code, out, err = run(
        capsys, "new", "chardev", "mydev", "-p", "buffer_size=64", "--param", "message=hi", "-o", str(out_dir)
    )
    assert (code, err) == (0, "")
    assert str(out_dir.resolve()) in out
    c = (out_dir / "mydev.c").read_text()
    assert "#define KMH_BUFFER_SIZE 64" in c and 'static const char kmh_message[] = "hi";' in c
    assert (out_dir / "Kbuild").read_text().strip().endswith("obj-m := mydev.o")


def test_new_defaults_to_a_directory_named_after_the_module(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = run(capsys, "new", "hello", "greeter")
    assert code == 0
    assert (tmp_path / "greeter" / "greeter.c").is_file()


def test_new_refuses_to_overwrite_without_force(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(capsys, "new", "hello", "m", "-o", str(tmp_path))[0] == 0
    code, _, err = run(capsys, "new", "hello", "m", "-o", str(tmp_path), "-p", "greeting=again")
    assert code == 2
    assert "is not empty" in err and "--force" in err
    assert run(capsys, "new", "hello", "m", "-o", str(tmp_path), "-p", "greeting=again", "--force")[0] == 0
    assert '"again"' in (tmp_path / "m.c").read_text()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["new", "nosuch", "m"], "no template named 'nosuch'"),
        (["new", "hello", "bad-name"], "module name 'bad-name' is not usable"),
        (["new", "hello", "m", "-p", "greting=x"], "did you mean 'greeting'?"),
        (["new", "hello", "m", "-p", "greeting"], "not of the form key=value"),
        (["new", "params", "m", "-p", "int_value=ten"], "parameter 'int_value' (int) cannot be 'ten'"),
        (["templates", "nosuch"], "no template named 'nosuch'"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], fragment: str
) -> None:
    if argv[0] == "new":
        argv = [*argv, "-o", str(tmp_path / "out")]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("kmh: error: ") and fragment in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
