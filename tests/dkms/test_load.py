"""Debian DKMS packages built by kmh, loaded and unloaded in a real VM, every declared module
together (companions first, then the package's last module).

acpi-call and ddcci need nothing from the kernel's own module tree. dm-writeboost (dm-mod),
v4l2loopback (videodev, mc) and digimend (hid) need tree modules loaded first: kmh check lists
them, and the runner loads them as ``debian =`` companions (the load side of issue 14)."""

from __future__ import annotations

import pytest

from harness.dkms import dkms_spec
from harness.lifecycle.runner import Runner, make_plan

pytestmark = pytest.mark.vm

LOADS_ALONE = ("acpi-call-dkms", "ddcci-dkms")
NEEDS_TREE_MODULES = ("dm-writeboost-dkms", "v4l2loopback-dkms", "digimend-dkms")


def run_packages(dkms_trees, packages, suite):
    specs = [dkms_spec(dkms_trees[package]) for package in packages]
    runs = Runner(jobs=1).execute(make_plan(specs, [suite]))
    for package, run in zip(packages, runs, strict=True):
        report = "\n".join(f"{s.name}: {s.status}: {s.message}\n{s.evidence}" for s in run.steps)
        assert run.verdict == "pass", f"{package}: {report}"
        statuses = {step.name: step.status for step in run.steps}
        assert statuses.get("load") == "pass" and statuses.get("unload") == "pass", f"{package}: {report}"
    return specs


@pytest.mark.parametrize("suite", ["bookworm", "bookworm-backports"])
def test_packages_load_and_unload_in_the_vm(dkms_trees, suite, kernel_61, kernel_612):
    specs = run_packages(dkms_trees, LOADS_ALONE, suite)
    # ddcci's two modules ran together: the backlight driver and ddcci, loaded first.
    assert [d.name for d in specs[1].companions] == ["ddcci"] and specs[1].name == "ddcci_backlight"


@pytest.mark.parametrize("suite", ["bookworm", "bookworm-backports"])
def test_packages_needing_tree_modules_load_and_unload_in_the_vm(dkms_trees, suite, kernel_61, kernel_612):
    run_packages(dkms_trees, NEEDS_TREE_MODULES, suite)
