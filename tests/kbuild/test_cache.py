"""Issue 16: the build cache. A hit gives the stored .ko bytes and replays the warnings; any
changed input misses; a damaged entry is a miss, never an error; the kill switch rebuilds.

Each test runs real kbuilds against a kernel target (a cache hit is only honest if the miss
before it was a real build) into its own build root, so the cache starts empty.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.kbuild import build_modules
from harness.kbuild.cache import BuildCache, _process_environment
from tests.kbuild.test_kbuild import HELLO, write_exporter_pair, write_module

pytestmark = pytest.mark.kbuild

KMH = str(Path(sys.executable).parent / "kmh")
#: A module with a compiler warning (an unused variable), so replay has something to show.
WARNS = HELLO.replace('{{ pr_info("{name} in\\n"); return 0; }}', "{{ int unused; return 0; }}")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entries(root: Path) -> list[Path]:
    return sorted(root.glob("cache/??/*/entry.json"))


def test_a_hit_gives_the_same_ko_bytes_and_replays_the_warnings(tmp_path, kernel_61):
    module = write_module(tmp_path / "warns", "warns", WARNS.format(name="warns"))
    (first,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert first.ok and not first.cached, first.log
    assert len(first.warnings) == 1 and "unused variable" in first.warnings[0].message, first.log
    (second,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert second.ok and second.cached
    assert "make did not run" in second.log
    assert sha(second.modules[0].path) == sha(first.modules[0].path)
    assert second.diagnostics == first.diagnostics
    assert second.warnings[0].file == module / "warns.c" and second.warnings[0].line == 3
    # --werror is another input: it misses, runs make, and the warning fails the build.
    (strict,) = build_modules([module], kernel_61, werror=True, build_root=tmp_path / "out")
    assert not strict.cached and not strict.ok and strict.errors


def test_one_changed_source_byte_misses(tmp_path, kernel_61):
    module = write_module(tmp_path / "byte", "byte", HELLO.format(name="byte"))
    (first,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    first_sha = sha(first.modules[0].path)  # the build copy's .ko: the next make rewrites it
    source = module / "byte.c"
    source.write_text(source.read_text().replace("byte in", "byte In"))
    (second,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert first.ok and second.ok and not second.cached
    assert sha(second.modules[0].path) != first_sha
    assert b"byte In" in second.modules[0].path.read_bytes()
    (third,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert third.cached and sha(third.modules[0].path) == sha(second.modules[0].path)


def test_another_kernel_and_another_kcflags_miss(tmp_path, kernel_61, kernel_612, monkeypatch):
    module = write_module(tmp_path / "flags", "flags", HELLO.format(name="flags"))
    (first,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    (other_kernel,) = build_modules([module], kernel_612, build_root=tmp_path / "out")
    assert first.ok and other_kernel.ok and not other_kernel.cached, other_kernel.log
    monkeypatch.setenv("KCFLAGS", "-DKMH_CACHE_TEST=1")
    (flagged,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert flagged.ok and not flagged.cached, flagged.log
    assert len(entries(tmp_path / "out")) == 3


def test_a_damaged_entry_is_a_miss_not_an_error(tmp_path, kernel_61):
    module = write_module(tmp_path / "dmg", "dmg", HELLO.format(name="dmg"))
    (first,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    first_sha = sha(first.modules[0].path)
    (entry,) = entries(tmp_path / "out")
    stored = entry.parent / "ko" / "dmg.ko"
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes()[:-1] + b"X")  # one byte of the stored .ko
    (second,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert second.ok and not second.cached, second.log
    assert sha(second.modules[0].path) == first_sha
    entry.write_text("{not json")  # the record itself
    (third,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert third.ok and not third.cached
    (fourth,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert fourth.cached and json.loads(entries(tmp_path / "out")[0].read_text())["modules"] == ["dmg.ko"]


def test_the_kill_switch_rebuilds_and_stores_nothing(tmp_path, kernel_61, monkeypatch):
    module = write_module(tmp_path / "kill", "kill", HELLO.format(name="kill"))
    monkeypatch.setenv("KMH_BUILD_CACHE", "off")
    for _ in range(2):
        (result,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
        assert result.ok and not result.cached
    assert entries(tmp_path / "out") == []
    monkeypatch.setenv("KMH_BUILD_CACHE", "refresh")
    (refreshed,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert refreshed.ok and not refreshed.cached and len(entries(tmp_path / "out")) == 1
    monkeypatch.delenv("KMH_BUILD_CACHE")
    (hit,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert hit.cached


def test_a_consumer_misses_when_the_exporter_it_used_changed(tmp_path, kernel_61):
    exporter, consumer = write_exporter_pair(tmp_path, "kexp", "kcons")
    first = build_modules([exporter, consumer], kernel_61, build_root=tmp_path / "out")
    assert all(r.ok and not r.cached for r in first)
    stored = [json.loads(entry.read_text()) for entry in entries(tmp_path / "out")]
    records = {record["modules"][0]: record for record in stored}
    assert records["kexp.ko"]["exports"] == ["kexp_value"]
    assert len(records["kcons.ko"]["depends"]) == 1
    again = build_modules([exporter, consumer], kernel_61, build_root=tmp_path / "out")
    assert [r.cached for r in again] == [True, True]
    (exporter / "kexp.c").write_text((exporter / "kexp.c").read_text().replace("42", "43"))
    changed = build_modules([exporter, consumer], kernel_61, build_root=tmp_path / "out")
    assert [r.ok for r in changed] == [True, True] and [r.cached for r in changed] == [False, False]
    # Alone, the consumer's recorded exporter is not in the batch: it is built (and fails to link).
    (alone,) = build_modules([consumer], kernel_61, build_root=tmp_path / "out")
    assert not alone.cached


def test_kmh_build_says_cached_and_rebuild_runs_make(tmp_path, kernel_61):
    module = write_module(tmp_path / "cli", "cli", HELLO.format(name="cli"))
    runs = [
        subprocess.run(
            [KMH, "build", "-k", "bookworm", *extra, str(module)], capture_output=True, text=True, timeout=300
        )
        for extra in ([], [], ["--rebuild"])
    ]
    assert [run.returncode for run in runs] == [0, 0, 0], runs[0].stderr
    assert "cached" not in runs[0].stderr
    assert "1 of 1 cached" in runs[1].stderr
    assert "cached" not in runs[2].stderr


def test_the_key_ignores_the_terminal_but_not_make_variables():
    base = {"PATH": "/usr/bin", "TERM": "xterm", "PWD": "/a", "PYTEST_CURRENT_TEST": "x"}
    same = {**base, "TERM": "dumb", "PWD": "/b", "PYTEST_CURRENT_TEST": "y", "SHLVL": "3"}
    assert _process_environment(base) == _process_environment(same)
    for name, value in (("KCFLAGS", "-O1"), ("W", "1"), ("KBUILD_EXTRA_SYMBOLS", "/x"), ("PATH", "/opt")):
        assert _process_environment({**base, name: value}) != _process_environment(base), name
    assert BuildCache.__doc__  # the key's inputs are documented where they are made


def test_a_build_that_reads_files_outside_its_project_is_never_cached(tmp_path, kernel_61):
    module = write_module(tmp_path / "extra", "extra", HELLO.format(name="extra"))
    cache = BuildCache(tmp_path / "cache", kernel_61, environment="host", environment_root=None, werror=False)
    files = [Path("Kbuild"), Path("extra.c")]
    assert cache.key(module, module, files) is not None
    (module / "Kbuild").write_text("obj-m := extra.o\nKBUILD_EXTRA_SYMBOLS := /elsewhere/Module.symvers\n")
    assert cache.key(module, module, files) is None
    (module / "Kbuild").write_text("obj-m := extra.o\nccflags-y := -I/opt/vendor/include\n")
    assert cache.key(module, module, files) is None
    (module / "Kbuild").write_text("obj-m := extra.o\nccflags-y := -I$(src)/include\n")
    assert cache.key(module, module, files) is not None
    symbols = tmp_path / "other.symvers"
    symbols.write_text("")
    (module / "Kbuild").write_text(f"obj-m := extra.o\nKBUILD_EXTRA_SYMBOLS := {symbols}\n")
    for _ in range(2):
        (result,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
        assert result.ok and not result.cached, result.log
    assert entries(tmp_path / "out") == []
    # Only what kbuild reads counts: a comment, or a Makefile next to a Kbuild, is not read.
    (module / "Kbuild").write_text("obj-m := extra.o\n# see KBUILD_EXTRA_SYMBOLS in the Makefile\n")
    (module / "Makefile").write_text(f"KBUILD_EXTRA_SYMBOLS := {symbols}\n")
    assert cache.key(module, module, [*files, Path("Makefile")]) is not None
