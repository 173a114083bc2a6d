"""Issue 14 (build side): real projects' layouts, incremental builds, objtool/modpost warnings.

Each test is a defect of the issue that failed on the code before it: relative includes out of
the module directory, project roots with ``obj-y += sub1/ sub2/``, several ``.ko`` from one
directory picked by dash/underscore name, a second identical build that recompiled everything,
and objtool/modpost warnings that never reached kmh's output or ``--werror``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kbuild import build_modules, pick_module
from tests.kbuild.test_kbuild import HELLO, modinfo, write_module

pytestmark = pytest.mark.kbuild

KMH = str(Path(sys.executable).parent / "kmh")

#: A ``ret`` objtool cannot accept in a RETHUNK kernel: every Debian kernel since 6.1 has one.
NAKED_RET = HELLO.replace("#include <linux/init.h>\n", "#include <linux/init.h>\n"
                          'static noinline void naked(void) {{ asm volatile("ret"); }}\n').replace(
    'pr_info("{name} in\\n");', 'naked(); pr_info("{name} in\\n");'
)  # fmt: skip
#: A pointer in .data to an __init function: modpost's "section mismatch" warning.
MISMATCH = HELLO + "int (*{name}_keep)(void) = {name}_init;\nEXPORT_SYMBOL({name}_keep);\n"


def compiled(log: str) -> list[str]:
    """The user objects kbuild compiled in a run (not modpost's ``.mod.o`` files nor kbuild's own
    ``.module-common.o``, built once per build tree from 6.12 on)."""
    objects = [line.split()[-1] for line in log.splitlines() if "CC [M]" in line]
    return [o for o in objects if not o.endswith(".mod.o") and not Path(o).name.startswith(".")]


def test_relative_include_outside_the_module_directory_builds(tmp_path, kernel):
    (tmp_path / "proj" / "include").mkdir(parents=True)
    (tmp_path / "proj" / "include" / "shared.h").write_text("#define SHARED_ANSWER 42\n")
    source = HELLO.format(name="relinc").replace('"relinc in\\n"', '"relinc %d\\n", SHARED_ANSWER')
    module = write_module(tmp_path / "proj" / "driver", "relinc", '#include "shared.h"\n' + source)
    (module / "Kbuild").write_text("ccflags-y := -I$(src)/../include\nobj-m := relinc.o\n")
    (result,) = build_modules([module], kernel, werror=True, build_root=tmp_path / "out")
    assert result.ok, result.log
    assert modinfo(result.modules[0].path)["name"] == "relinc"
    assert result.project_root == tmp_path / "proj"


def test_error_in_a_header_outside_the_module_directory_names_the_users_file(tmp_path, kernel_61):
    (tmp_path / "proj" / "include").mkdir(parents=True)
    (tmp_path / "proj" / "include" / "shared.h").write_text("static int broken = undeclared_here;\n")
    module = write_module(
        tmp_path / "proj" / "driver", "hdr", '#include "../include/shared.h"\n' + HELLO.format(name="hdr")
    )
    (result,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert not result.ok
    assert result.errors[0].file == tmp_path / "proj" / "include" / "shared.h"


def test_project_root_with_subdirectories_builds_every_module(tmp_path, kernel_61):
    root = tmp_path / "project"
    write_module(root / "sub1", "subone", HELLO.format(name="subone"))
    write_module(root / "sub2", "subtwo", HELLO.format(name="subtwo"))
    (root / "Kbuild").write_text("obj-y += sub1/ sub2/\n")
    # The root, and one of its subdirectories named as well (a companion): built once.
    results = build_modules([root, root / "sub1"], kernel_61, werror=True, build_root=tmp_path / "out")
    assert all(result.ok for result in results), results[0].log
    assert sorted(m.name for m in results[0].modules) == ["subone", "subtwo"]
    assert [m.name for m in results[1].modules] == ["subone"]
    assert compiled(results[0].log).count(compiled(results[0].log)[0]) == 1
    assert "fixdep" not in results[0].log


def test_failure_without_a_compiler_diagnostic_shows_makes_reason(tmp_path):
    module = write_module(tmp_path / "norule", "norule", HELLO.format(name="norule"))
    (module / "Kbuild").write_text("obj-m := norule.o\nnorule-y := missing_file.o\n")
    run = subprocess.run([KMH, "build", str(module)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "missing_file" in run.stderr, run.stderr
    assert "Entering directory" not in run.stderr


def test_project_root_that_builds_nothing_says_why_not_makes_directory_lines(tmp_path):
    root = tmp_path / "project"
    write_module(root / "sub1", "subone", HELLO.format(name="subone"))
    (root / "sub1" / "Kbuild").write_text("obj-n := subone.o\n")  # a typo: nothing is a module
    (root / "Kbuild").write_text("obj-y += sub1/\n")
    run = subprocess.run([KMH, "build", str(root)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "built no .ko" in run.stderr and "obj-m" in run.stderr, run.stderr
    assert "Entering directory" not in run.stderr and "Leaving directory" not in run.stderr


def test_several_modules_from_one_directory_are_picked_by_kernel_name(tmp_path, kernel_61):
    module = tmp_path / "multi"
    module.mkdir()
    (module / "a-b.c").write_text(HELLO.format(name="a_b"))
    (module / "c.c").write_text(HELLO.format(name="c"))
    (module / "Kbuild").write_text("obj-m := a-b.o c.o\n")
    (result,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert result.ok, result.log
    assert pick_module(result, "a_b").path.name == "a-b.ko"
    assert pick_module(result, "a-b").path.name == "a-b.ko"
    assert pick_module(result, "c").path.name == "c.ko"
    with pytest.raises(HarnessError, match="matches none of the .ko files it builds \\(a-b.ko, c.ko\\)"):
        pick_module(result, "d")


def test_a_second_identical_build_compiles_nothing_and_a_change_compiles_one_file(
    tmp_path, kernel, monkeypatch
):
    monkeypatch.setenv("KMH_BUILD_CACHE", "off")  # kbuild's own incremental build, which a cache miss runs
    sources = [write_module(tmp_path / f"inc{i}", f"inc{i}", HELLO.format(name=f"inc{i}")) for i in range(3)]
    first = build_modules(sources, kernel, build_root=tmp_path / "out")
    assert all(result.ok for result in first)
    assert len(compiled(first[0].log)) == 3
    kos = {result.modules[0].path: result.modules[0].path.stat().st_mtime_ns for result in first}
    second = build_modules(sources, kernel, build_root=tmp_path / "out")
    assert all(result.ok for result in second)
    assert compiled(second[0].log) == []
    assert "CC" not in second[0].log and " LD " not in second[0].log, second[0].log
    assert {r.modules[0].path: r.modules[0].path.stat().st_mtime_ns for r in second} == kos
    changed = sources[1] / "inc1.c"
    changed.write_text(changed.read_text() + "/* changed */\n")
    os.utime(changed, (changed.stat().st_atime + 5, changed.stat().st_mtime + 5))
    third = build_modules(sources, kernel, build_root=tmp_path / "out")
    assert all(result.ok for result in third)
    assert [Path(o).name for o in compiled(third[0].log)] == ["inc1.o"]


def test_objtool_and_modpost_warnings_are_reported_kept_and_count_for_werror(tmp_path, kernel_61):
    naked = write_module(tmp_path / "naked", "naked", NAKED_RET.format(name="naked"))
    mismatch = write_module(tmp_path / "mism", "mism", MISMATCH.format(name="mism"))
    for attempt in ("first", "no-op rebuild"):
        results = build_modules([naked, mismatch], kernel_61, build_root=tmp_path / "out")
        assert all(result.ok for result in results), attempt
        objtool = [w for w in results[0].warnings if w.message.startswith("objtool:")]
        assert objtool and objtool[0].file == naked / "naked.o", (attempt, results[0].diagnostics)
        assert "return found in RETHUNK build" in objtool[0].message
        assert any("section mismatch" in w.message for w in results[1].warnings), (attempt, results[1].log)
    strict = build_modules([naked, mismatch], kernel_61, werror=True, build_root=tmp_path / "strict")
    assert [result.ok for result in strict] == [False, False]
    run = subprocess.run([KMH, "build", "--werror", str(naked)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "objtool: naked+0x5" in run.stderr


def test_two_builds_of_one_directory_at_once_do_not_race(tmp_path, kernel_61):
    module = write_module(tmp_path / "race", "race", HELLO.format(name="race"))
    outcomes: list[bool] = []
    logs: list[str] = []

    def build() -> None:
        (result,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
        outcomes.append(result.ok)
        logs.append(result.log)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [True, True, True], logs
    assert not any("fixdep" in log for log in logs)


def test_copies_unused_for_a_week_are_removed(tmp_path, kernel_61):
    module = write_module(tmp_path / "fresh", "fresh", HELLO.format(name="fresh"))
    root = tmp_path / "out" / kernel_61.release
    stale = root / "old-0123456789"
    (stale / "sub").mkdir(parents=True)
    recent = root / "recent-0123456789"
    recent.mkdir()
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(stale, (week_ago, week_ago))
    (result,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert result.ok
    assert not stale.exists() and recent.exists() and result.modules[0].path.is_file()
