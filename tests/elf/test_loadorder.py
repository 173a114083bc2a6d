"""Issue 14 (1): which modules a spec loads and in which order, computed on real .ko files.

The guest side is tests/lifecycle/test_load_together.py; these are the host-side rules on the
fixture modules built against 6.1 and the 6.1 target's own tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.kernels.target import KernelTarget
from harness.lifecycle.cycle import GuestModules
from harness.lifecycle.loadorder import check_together, plan_loads, symbol_order, tree_roots
from harness.lifecycle.spec import ModuleDef, ModuleSpec
from harness.vm.modules import ModuleTree


def test_built_modules_load_in_symbol_order_not_listed_order(fixtures_61: dict[str, Path]) -> None:
    built = {"kmh_consumer": fixtures_61["kmh_consumer"], "kmh_provider": fixtures_61["kmh_provider"]}
    assert symbol_order(built, ["kmh_consumer", "kmh_provider"]) == ["kmh_provider", "kmh_consumer"]
    assert symbol_order(built, ["kmh_provider", "kmh_consumer"]) == ["kmh_provider", "kmh_consumer"]


def test_modules_needing_each_other_have_no_order(fixtures_61: dict[str, Path]) -> None:
    built = {"kmh_cyca": fixtures_61["kmh_cyca"], "kmh_cycb": fixtures_61["kmh_cycb"]}
    with pytest.raises(HarnessError, match=r"dependency cycle in .*: kmh_cyca -> kmh_cycb -> kmh_cyca"):
        symbol_order(built, ["kmh_cyca", "kmh_cycb"])


def test_tree_modules_a_built_module_needs(fixtures_61: dict[str, Path], kernel_61: KernelTarget) -> None:
    # kmh_nsimport uses usb_stor_sense_invalidCDB of usb-storage; modprobe brings its own deps.
    needed, soft = tree_roots({"kmh_nsimport": fixtures_61["kmh_nsimport"]}, kernel_61)
    assert (needed, soft) == (["usb_storage"], [])
    named, _ = tree_roots({"kmh_provider": fixtures_61["kmh_provider"]}, kernel_61, ["videodev"])
    assert named == ["videodev"]


def test_plan_installs_the_closure_and_expects_the_roots(
    fixtures_61: dict[str, Path], kernel_61: KernelTarget
) -> None:
    spec = ModuleSpec(
        module=ModuleDef(name="kmh_nsimport", source=Path("x")),
        origin="test",
        companions=(ModuleDef(name="videodev", debian="videodev"),),
    )
    modules = GuestModules(built={"kmh_nsimport": fixtures_61["kmh_nsimport"]}, order=["kmh_nsimport"])
    plan_loads(modules, spec, kernel_61)
    assert modules.tree_roots == ["videodev", "usb_storage"]
    names = [module.name for module in modules.tree]
    assert names.index("mc") < names.index("videodev")
    assert names.index("usbcore") < names.index("usb_storage")
    assert modules.expect_loaded == ["videodev", "usb_storage"]


def test_softdeps_come_with_their_module_aliases_resolved(kernel_61: KernelTarget) -> None:
    """libcrc32c's ``softdep=pre: crc32c`` names an alias: both providers come before it
    (kmh vm run --module libcrc32c left them out, so its init failed with ENOENT)."""
    names = [module.name for module in ModuleTree(kernel_61.modules_dir).resolve(["libcrc32c"])]
    assert set(names) == {"crc32c_generic", "crc32c_intel", "libcrc32c"}
    assert names[-1] == "libcrc32c"


def test_companions_are_checked_before_booting_too(
    fixtures_61: dict[str, Path], kernel_61: KernelTarget, tmp_path: Path
) -> None:
    """Two companions exporting the same symbol: the kernel would refuse the second at insmod
    (ENOEXEC); the pre-boot check names the companion and the kernel's reason."""
    built = {}
    for name, fixture in (
        ("kmh_consumer", "kmh_consumer"),
        ("kmh_provider", "kmh_provider"),
        ("kmh_provider_old", "kmh_provider"),
    ):
        (tmp_path / name).mkdir()
        built[name] = tmp_path / name / f"{name}.ko"
        shutil.copyfile(fixtures_61[fixture], built[name])
    modules = GuestModules(built=built, order=list(built))
    verdict = check_together(modules, "kmh_consumer", kernel_61)
    assert [(r.kind, r.symbol) for r in verdict.reasons] == [("duplicate-export", "kmh_provider_value")]
    assert verdict.reasons[0].message.startswith(
        "companion kmh_provider: exports duplicate symbol kmh_provider_value (owned by kmh_provider_old)"
    )
    del modules.built["kmh_provider_old"]
    assert check_together(modules, "kmh_consumer", kernel_61).loadable
