"""dkms.conf read as dkms reads it: sourced by bash with dkms's variables; BUILD_EXCLUSIVE_*;
PATCH[] applied to the copy only; a kernel a package excludes is skipped with the reason."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.dkms import build_dkms, declared_modules, read_dkms_conf
from harness.errors import HarnessError
from tests.kbuild.test_kbuild import HELLO

KMH = str(Path(sys.executable).parent / "kmh")


def package(directory: Path, conf: str, modules: dict[str, str]) -> Path:
    """A small DKMS tree: dkms.conf, a Kbuild for MODULES, their C files."""
    directory.mkdir(parents=True)
    (directory / "dkms.conf").write_text(textwrap.dedent(conf))
    (directory / "Kbuild").write_text(f"obj-m := {' '.join(f'{name}.o' for name in modules)}\n")
    for name, source in modules.items():
        (directory / f"{name}.c").write_text(source)
    return directory


def test_conf_is_sourced_with_dkms_variables(tmp_path, kernel_61):
    tree = package(
        tmp_path / "pkg-1.0",
        """\
        PACKAGE_NAME="pkg"
        PACKAGE_VERSION="1.0"
        if [ -f $kernel_source_dir/.config ]; then
            . $kernel_source_dir/.config
            [ "${CONFIG_MODULES:-n}" = y ] || BUILD_EXCLUSIVE_KERNEL="REQUIRES CONFIG_MODULES"
        fi
        BUILT_MODULE_NAME[0]="one"
        BUILT_MODULE_NAME[1]="$PACKAGE_NAME-two"
        BUILT_MODULE_LOCATION[1]="sub/"
        DEST_MODULE_LOCATION[0]="/extra"
        MAKE[0]="make KVER=$kernelver ARCH_WAS=$arch"
        """,
        {},
    )
    conf = read_dkms_conf(tree, kernel_61, tmp_path / "tree")
    assert (conf.package, conf.version) == ("pkg", "1.0")
    assert [(m.name, m.location, m.dest) for m in conf.modules] == [
        ("one", "", "/extra"),
        ("pkg-two", "sub/", ""),
    ]
    assert conf.make == f"make KVER={kernel_61.release} ARCH_WAS=x86_64"
    assert conf.excluded == ""
    assert declared_modules(tree) == ["one", "pkg-two"]


def test_default_make_is_dkms_default(tmp_path, kernel_61):
    tree = package(tmp_path / "d", "PACKAGE_NAME=d\nPACKAGE_VERSION=2\nBUILT_MODULE_NAME[0]=d\n", {})
    conf = read_dkms_conf(tree, kernel_61, tmp_path / "tree")
    assert conf.make == f"make -C {kernel_61.kbuild_dir} M={tmp_path / 'tree' / 'd' / '2' / 'build'}"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('BUILD_EXCLUSIVE_KERNEL="^4\\.19\\."', "BUILD_EXCLUSIVE_KERNEL="),
        ('BUILD_EXCLUSIVE_KERNEL_MIN="6.5"', "BUILD_EXCLUSIVE_KERNEL_MIN=6.5"),
        ('BUILD_EXCLUSIVE_KERNEL_MAX="5.15"', "BUILD_EXCLUSIVE_KERNEL_MAX=5.15"),
        ('BUILD_EXCLUSIVE_ARCH="^(aarch64|ppc64le)$"', "BUILD_EXCLUSIVE_ARCH="),
        ('BUILD_EXCLUSIVE_CONFIG="CONFIG_MODULES !CONFIG_X86_64"', "CONFIG_X86_64 is set"),
    ],
)
def test_build_exclusive_skips_with_the_reason(tmp_path, kernel_61, line, reason):
    tree = package(
        tmp_path / "ex",
        f"PACKAGE_NAME=ex\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=ex\n{line}\n",
        {"ex": HELLO.format(name="ex")},
    )
    built = build_dkms(tree, kernel_61, dkms_tree=tmp_path / "tree")
    assert reason in built.skipped and kernel_61.release[:3] in built.skipped + kernel_61.release
    assert not built.results and not (tmp_path / "tree").exists()


def test_matching_build_exclusive_builds(tmp_path, kernel_61):
    tree = package(
        tmp_path / "in",
        'PACKAGE_NAME=in\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=inc\nBUILD_EXCLUSIVE_KERNEL="^6\\.1\\."\n'
        'BUILD_EXCLUSIVE_ARCH="x86_64"\nBUILD_EXCLUSIVE_CONFIG="CONFIG_MODULES"\n',
        {"inc": HELLO.format(name="inc")},
    )
    built = build_dkms(tree, kernel_61, dkms_tree=tmp_path / "tree")
    assert built.skipped == "" and built.ok, built.log


def test_patch_is_applied_to_the_copy_only(tmp_path, kernel_61):
    tree = package(
        tmp_path / "pat",
        "PACKAGE_NAME=pat\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=pat\nPATCH[0]=fix.patch\n",
        {"pat": HELLO.format(name="pat").replace("return 0;", "return BROKEN;")},
    )
    (tree / "patches").mkdir()
    (tree / "patches" / "fix.patch").write_text(
        "--- a/pat.c\n+++ b/pat.c\n@@ -2,3 +2,4 @@\n #include <linux/init.h>\n+#define BROKEN 0\n"
        ' static int __init pat_init(void) { pr_info("pat in\\n"); return BROKEN; }\n'
        ' static void __exit pat_exit(void) { pr_info("pat out\\n"); }\n'
    )
    for attempt in range(2):  # the second build finds the copy already patched
        built = build_dkms(tree, kernel_61, dkms_tree=tmp_path / "tree")
        assert built.ok, (attempt, built.log)
    assert "BROKEN 0" not in (tree / "pat.c").read_text()


def test_bad_dkms_conf_is_one_line_exit_2(tmp_path):
    tree = package(tmp_path / "bad", "PACKAGE_NAME=bad\nif then\n", {})
    run = subprocess.run([KMH, "build", str(tree)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "dkms.conf" in run.stderr.strip().splitlines()[-1]
    empty = package(tmp_path / "empty", "PACKAGE_NAME=empty\n", {})
    with pytest.raises(HarnessError, match="declares no BUILT_MODULE_NAME"):
        declared_modules(empty)


def test_kmh_build_reports_a_skipped_kernel_and_builds_the_package(tmp_path):
    tree = package(
        tmp_path / "two",
        "PACKAGE_NAME=two\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=twoa\nBUILT_MODULE_NAME[1]=twob\n"
        'BUILD_EXCLUSIVE_KERNEL="^6\\.1\\."\n',
        {"twoa": HELLO.format(name="twoa"), "twob": HELLO.format(name="twob")},
    )
    run = subprocess.run(
        [KMH, "build", "-k", "bookworm", "-k", "bookworm-backports", str(tree)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert [Path(line).name for line in run.stdout.split()] == ["twoa.ko", "twob.ko"]
    assert 'skipped: BUILD_EXCLUSIVE_KERNEL="^6\\.1\\." does not match 6.12' in run.stderr


def test_kmh_run_reports_an_excluded_kernel_as_skipped_in_every_format(tmp_path):
    tree = package(
        tmp_path / "only61",
        'PACKAGE_NAME=only61\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=only61\nBUILD_EXCLUSIVE_KERNEL="^6\\.1\\."\n',
        {"only61": HELLO.format(name="only61")},
    )
    junit, ktap, json_file = tmp_path / "r.xml", tmp_path / "r.ktap", tmp_path / "r.json"
    command = [KMH, "run", "-k", "bookworm-backports", str(tree)]
    command += ["--junit", str(junit), "--ktap", str(ktap), "--json", str(json_file)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SKIPPED" in run.stdout and "1 skipped" in run.stdout, run.stdout
    assert "does not match 6.12" in run.stdout
    report = json.loads(json_file.read_text())
    assert report["summary"]["skipped"] == 1 and report["summary"]["ok"] is True
    assert report["runs"][0]["verdict"] == "skipped"
    assert '<skipped message="skipped: BUILD_EXCLUSIVE_KERNEL' in junit.read_text()
    assert re.search(r"^ok 1 .* # SKIP BUILD_EXCLUSIVE_KERNEL", ktap.read_text(), re.M), ktap.read_text()
