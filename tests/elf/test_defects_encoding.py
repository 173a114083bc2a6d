"""Issue 13 regression: module strings that are not UTF-8 crashed ``kmh inspect`` and ``kmh check``.

A Latin-1 ``MODULE_AUTHOR`` (or a fuzzed byte) is decoded with surrogateescape and printing it
raised UnicodeEncodeError on a strict UTF-8 stdout. Output must never crash on any locale; the
bytes are shown as ``\\xNN`` escapes. A real module is built with such strings (real kbuild) and
the real ``kmh`` runs in a fresh process under each locale, PYTHONIOENCODING unset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.kbuild import build_modules
from harness.kernels.target import KernelTarget

pytestmark = pytest.mark.kbuild

KMH = str(Path(sys.executable).parent / "kmh")

SOURCE = b"""\
#include <linux/module.h>
#include <linux/init.h>
static int __init latin_init(void) { return 0; }
static void __exit latin_exit(void) { }
module_init(latin_init);
module_exit(latin_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("Fran\\xe7ois M\\xfcller");
MODULE_DESCRIPTION("fuzzed \\xff\\xfe\\x80 bytes");
"""

LOCALES = {
    "C.UTF-8": {"LC_ALL": "C.UTF-8"},
    # A real UTF-8 locale (not a coercion target): Python's stdout is strict there.
    "en_US.UTF-8": {"LC_ALL": "en_US.UTF-8", "LANG": "en_US.UTF-8", "LOCPATH": "<compiled>"},
    "C": {"LC_ALL": "C"},
    "POSIX": {"LC_ALL": "POSIX"},
    # No UTF-8 mode and no locale coercion: stdout is plain ASCII.
    "C-ascii": {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
}


@pytest.fixture(scope="module")
def latin1_ko(kernel_61: KernelTarget, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real module whose author and description are not UTF-8, in a file whose name is not either."""
    root = tmp_path_factory.mktemp("latin1")
    source = root / "latin"
    source.mkdir()
    (source / "latin.c").write_bytes(SOURCE)
    (source / "Kbuild").write_text("obj-m := latin.o\n")
    (result,) = build_modules([source], kernel_61, build_root=root / "out")
    assert result.ok, result.log
    data = result.modules[0].path.read_bytes()
    assert b"author=Fran\xe7ois M\xfcller" in data
    renamed = Path(os.fsdecode(bytes(root) + b"/fran\xe7ois.ko"))
    renamed.write_bytes(data)
    return renamed


@pytest.fixture(scope="module")
def locpath(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """en_US.UTF-8 compiled with localedef into a private directory (nothing system-wide)."""
    directory = tmp_path_factory.mktemp("locales")
    subprocess.run(["localedef", "-i", "en_US", "-f", "UTF-8", str(directory / "en_US.UTF-8")], check=True)
    return directory


def environment(locale: str, locpath: Path) -> dict[str, str]:
    prefixes = ("LC_", "LANG", "LOCPATH", "PYTHONIO", "PYTHONUTF8", "PYTHONCOERCE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update({k: str(locpath) if v == "<compiled>" else v for k, v in LOCALES[locale].items()})
    return env


def test_the_strict_locale_is_strict(locpath: Path) -> None:
    script = "import sys; print(sys.stdout.encoding, sys.stdout.errors)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=environment("en_US.UTF-8", locpath),
        capture_output=True,
        text=True,
    )
    assert result.stdout.split() == ["utf-8", "strict"], result.stderr


@pytest.mark.parametrize("locale", list(LOCALES))
@pytest.mark.parametrize(
    "command", [("inspect",), ("inspect", "--json"), ("modinfo",), ("check", "--kernel", "bookworm")]
)
def test_output_never_crashes(latin1_ko: Path, locpath: Path, locale: str, command: tuple[str, ...]) -> None:
    verb, *options = command
    env = environment(locale, locpath)
    result = subprocess.run(
        [KMH, verb, os.fsdecode(latin1_ko), *options], capture_output=True, env=env, timeout=300
    )
    assert b"Traceback" not in result.stderr and b"UnicodeEncodeError" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    if verb == "inspect" and not options:
        text = result.stdout.decode("utf-8")
        assert "Fran\\xe7ois M\\xfcller" in text and "fuzzed \\xff\\xfe\\x80 bytes" in text
    if verb == "inspect" and options:
        parsed = json.loads(result.stdout)
        assert "Fran" in json.dumps(parsed)
    if verb == "check":
        assert b"loadable" in result.stdout
