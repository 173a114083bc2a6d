"""Issue 14, load side, for real on Debian 6.1 (one Runner, one shared VM boot for all specs).

- A module using symbols of the kernel's own modules (videodev → mc, and libcrc32c, whose
  softdep brings crc32c) loads with ``method = "insmod"`` and ``"modprobe"``: the tree modules are
  modprobed first and gone again after the unload (the cleanup step compares /proc/modules).
- Modules named together load in the order their symbols demand, not the order listed: the
  spec's own module is the exporter, its companion the consumer; a ``debian =`` companion is
  really loaded.
- ``name = "a-b"`` verifies /sys/module/a_b.
- A kernel-internal errno (EPROBE_DEFER, 517) is named, and a duplicate export is explained with
  the kernel's own reason (a module exporting a symbol videodev exports, loaded beside it).
Before this change each of them failed: plain insmod ("Unknown symbol in module"), the companion
inserted first, /sys/module/a-b/initstate 'missing', "Unknown error 517", "Invalid module format".
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.lifecycle.result import ModuleRun
from harness.lifecycle.runner import Runner, make_plan
from harness.lifecycle.spec import load_spec

pytestmark = pytest.mark.vm

TREE_USER_C = """\
#include <linux/module.h>
#include <linux/crc32c.h>
#include <media/v4l2-dev.h>

static int __init kmh_tree_user_init(void)
{
	struct video_device *vdev = video_device_alloc();

	if (!vdev)
		return -ENOMEM;
	video_device_release(vdev);
	pr_info("kmh_tree_user: crc32c %08x\\n", crc32c(0, "kmh", 3));
	return 0;
}

static void __exit kmh_tree_user_exit(void)
{
}

module_init(kmh_tree_user_init);
module_exit(kmh_tree_user_exit);
MODULE_LICENSE("GPL");
"""

#: Exports a symbol videodev exports too: kbuild allows it for an external module (modpost only
#: refuses duplicates with vmlinux), the kernel refuses it while videodev is loaded. It is one
#: kmh_tree_user does not use: modules built in one batch see each other's exports.
DUPLICATE_C = """\
#include <linux/module.h>

void v4l2_prio_init(void *global);

void v4l2_prio_init(void *global)
{
	(void)global;
}
EXPORT_SYMBOL(v4l2_prio_init);

static int __init kmh_dup_video_init(void)
{
	return 0;
}

static void __exit kmh_dup_video_exit(void)
{
}

module_init(kmh_dup_video_init);
module_exit(kmh_dup_video_exit);
MODULE_LICENSE("GPL");
"""

DASH_C = """\
#include <linux/module.h>

static int __init kmh_dash_init(void)
{
	pr_info("%s: here\\n", KBUILD_MODNAME);
	return 0;
}

static void __exit kmh_dash_exit(void)
{
}

module_init(kmh_dash_init);
module_exit(kmh_dash_exit);
MODULE_LICENSE("GPL");
"""

DEFER_C = """\
#include <linux/module.h>

static int __init kmh_defer_init(void)
{
	return -EPROBE_DEFER;
}

module_init(kmh_defer_init);
MODULE_LICENSE("GPL");
"""


def _source(root: Path, name: str, code: str, *, directory_name: str = "", also: str = "") -> Path:
    """A module source directory; ALSO names a second module built beside it (from the same code)."""
    directory = root / (directory_name or name)
    directory.mkdir()
    (directory / f"{name}.c").write_text(code)
    objects = [f"{name}.o"]
    if also:
        (directory / f"{also}.c").write_text(code)
        objects.insert(0, f"{also}.o")
    (directory / "Kbuild").write_text(f"obj-m := {' '.join(objects)}\n")
    return directory


SPECS = {
    "tree_insmod": """
        [module]
        source = "{tree_user}"
        name = "kmh_tree_user"
        [load]
        method = "insmod"
        [expect]
        load_dmesg = ["kmh_tree_user: crc32c "]
        loaded = ["videodev", "mc", "libcrc32c"]
        reload = false
        """,
    "tree_modprobe": """
        [module]
        source = "{tree_user}"
        name = "kmh_tree_user"
        [load]
        method = "modprobe"
        [expect]
        loaded = ["videodev", "mc", "libcrc32c"]
        reload = false
        """,
    "together": """
        [module]
        template = "exporter"
        name = "kmh_tg_exporter"
        [[companion]]
        template = "consumer"
        name = "kmh_tg_consumer"
        params = {{ exporter_prefix = "kmh_tg_exporter", a = 2, b = 3 }}
        [[companion]]
        debian = "videodev"
        [load]
        method = "insmod"
        [expect]
        load_dmesg = ['kmh_tg_consumer: kmh_tg_exporter_add\\(2, 3\\) = 5']
        loaded = ["kmh_tg_consumer", "videodev", "mc"]
        """,
    "dash": """
        [module]
        source = "{dash}"
        name = "kmh-dash-one"
        [expect]
        load_dmesg = ["kmh_dash_one: here"]
        reload = false
        """,
    "underscore": """
        [module]
        source = "{dash2}"
        name = "kmh_dash_two"
        [expect]
        load_dmesg = ["kmh_dash_two: here"]
        reload = false
        """,
    "defer": """
        [module]
        source = "{defer}"
        name = "kmh_defer"
        """,
    "duplicate": """
        [module]
        source = "{duplicate}"
        name = "kmh_dup_video"
        [[companion]]
        debian = "videodev"
        """,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, kernel_61) -> dict[str, ModuleRun]:
    root = tmp_path_factory.mktemp("together")
    paths = {
        "tree_user": _source(root, "kmh_tree_user", TREE_USER_C),
        "defer": _source(root, "kmh_defer", DEFER_C),
        # Two .ko each; no .ko name twice in a run (a batch holding two would be rebuilt module
        # by module, splitting the exporter/consumer pair above: a kbuild batching matter).
        "dash": _source(root, "kmh-dash-one", DASH_C, also="kmh-aaa"),
        "dash2": _source(root, "kmh-dash-two", DASH_C, also="kmh-aab"),
        "duplicate": _source(root, "kmh_dup_video", DUPLICATE_C),
    }
    specs = []
    for key, body in SPECS.items():
        spec_path = root / f"{key}.toml"
        spec_path.write_text(textwrap.dedent(body.format(**paths)))
        specs.append(load_spec(spec_path))
    plan = make_plan(specs, ["bookworm"])
    return dict(zip(SPECS, Runner(jobs=1).execute(plan), strict=True))


def _report(run: ModuleRun) -> str:
    return "\n".join(f"{s.name}: {s.status}: {s.message}\n{s.evidence}" for s in run.steps)


@pytest.mark.parametrize("key", ["tree_insmod", "tree_modprobe"])
def test_kernel_tree_dependencies_and_softdeps_are_loaded_and_unloaded(runs, key):
    run = runs[key]
    assert run.verdict == "pass", _report(run)
    load = next(s for s in run.steps if s.name == "load")
    cleanup = next(s for s in run.steps if s.name == "cleanup")
    assert load.status == "pass" and cleanup.status == "pass", _report(run)


def test_modules_named_together_load_in_symbol_order_with_a_tree_companion(runs):
    run = runs["together"]
    assert run.verdict == "pass", _report(run)
    assert [s.name for s in run.steps if s.status == "pass"][-3:] == ["unload", "cleanup", "reload"]


@pytest.mark.parametrize("key", ["dash", "underscore"])
def test_dashed_name_verifies_the_underscored_sysfs_directory(runs, key):
    """name = "kmh-dash-one" picks kmh-dash-one.ko and verifies /sys/module/kmh_dash_one;
    name = "kmh_dash_two" picks kmh-dash-two.ko, not kmh-aab.ko (first in sorted order)."""
    run = runs[key]
    assert run.verdict == "pass", _report(run)
    verify = next(s for s in run.steps if s.name == "verify")
    assert verify.status == "pass", _report(run)


def test_kernel_internal_errno_is_named(runs):
    failure = runs["defer"].failure
    assert failure is not None and failure.name == "load", _report(runs["defer"])
    assert "EPROBE_DEFER" in failure.message, failure.message


def test_duplicate_export_headline_carries_the_kernels_reason(runs):
    failure = runs["duplicate"].failure
    assert failure is not None and failure.name == "load", _report(runs["duplicate"])
    assert "exports duplicate symbol v4l2_prio_init (owned by videodev)" in failure.message, failure.message


def test_vm_run_module_brings_its_softdeps(kernel_61) -> None:
    """``kmh vm run --module libcrc32c``: modprobe finds libcrc32c's softdep (crc32c) in the guest."""
    kmh = str(Path(sys.executable).parent / "kmh")
    command = "/sbin/modprobe libcrc32c && cut -d' ' -f1 /proc/modules"
    result = subprocess.run(
        [kmh, "vm", "run", "-k", kernel_61.release, "--module", "libcrc32c", "--", command],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "libcrc32c" in loaded and ({"crc32c_generic", "crc32c_intel"} & set(loaded)), result.stdout


def test_each_module_is_charged_its_own_share_of_the_shared_build(kernel_61) -> None:
    """Issue 14 (6): four modules built in one kbuild used to be charged the whole build each,
    so their times summed to several times the run's wall clock (26m20s for a 55 s run)."""
    import time
    import xml.etree.ElementTree as ET

    from harness.lifecycle.spec import spec_for_template
    from harness.report import render_junit, to_json

    stamp = f"{time.time_ns()}"  # a greeting no earlier build has seen: a real compile each time
    specs = [spec_for_template("hello", f"kmh_dur_{i}", {"greeting": f"dur {stamp} {i}"}) for i in range(4)]
    started = time.monotonic()
    runs = Runner(jobs=1).execute(make_plan(specs, ["bookworm"]))
    wall = time.monotonic() - started
    assert [run.verdict for run in runs] == ["pass"] * 4, "\n".join(_report(run) for run in runs)
    builds = [next(s for s in run.steps if s.name == "build").duration for run in runs]
    assert max(builds) > 0.1, builds  # the build was real
    assert sum(run.duration for run in runs) <= wall, ([run.duration for run in runs], wall)
    summary = to_json(runs, elapsed=wall)["summary"]
    assert summary["duration"] == round(wall, 3) and summary["module_time"] <= summary["duration"]
    suites = ET.fromstring(render_junit(runs, elapsed=wall).split("?>", 1)[1])
    assert float(suites.get("time")) == pytest.approx(wall, abs=0.01)
    assert sum(float(suite.get("time")) for suite in suites.iter("testsuite")) <= wall
