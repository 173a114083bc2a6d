"""``kmh deps`` against ``depmod -n`` on real trees of both targets, byte for byte.

Besides the targets' trees as Debian ships them (6.1: plain .ko; 6.12: .ko.xz), variants cover
what decides depmod's order: modules missing from modules.order (they come last, in kmod's hash
order), an ``updates/`` directory overriding same-named modules, mixed compressed files, no
modules.order at all, and a modules.order whose last line lacks its newline.
"""

from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from harness.elf.depgraph import dependency_graph, show_depends
from harness.elf.tree import ModuleTree
from harness.errors import HarnessError
from harness.kernels.target import KernelTarget
from tests.elf.elf_helpers import depmod_sections, make_farm, materialise, run_kmh


def kmh_files(tree: Path) -> dict[str, bytes]:
    graph = dependency_graph(tree)
    return {"modules.dep": graph.modules_dep(), "modules.symbols": graph.modules_symbols()}


def test_deps_equal_depmod_on_the_target_tree(kernel: KernelTarget) -> None:
    expected = depmod_sections(kernel.root, kernel.release)
    ours = kmh_files(kernel.modules_dir)
    assert ours["modules.dep"] == expected["modules.dep"]
    assert ours["modules.symbols"] == expected["modules.symbols"]
    assert ours["modules.dep"].count(b"\n") > 4000


def test_cli_prints_modules_dep_and_symbols(kernel_61: KernelTarget) -> None:
    expected = depmod_sections(kernel_61.root, kernel_61.release)
    dep = run_kmh("deps", str(kernel_61.modules_dir))
    assert dep.returncode == 0, dep.stderr
    assert dep.stdout == expected["modules.dep"]
    symbols = run_kmh("deps", str(kernel_61.modules_dir), "--symbols")
    assert symbols.stdout == expected["modules.symbols"]


@pytest.fixture(scope="module")
def variant_tree(kernel: KernelTarget, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The target's tree with every 5th modules.order line dropped, updates/ overrides, and a mix
    of plain, .ko.xz and .ko.zst files. Returns (root, modules dir)."""
    root = tmp_path_factory.mktemp(f"variant-{kernel.release}")
    tree = make_farm(kernel.modules_dir, root, kernel.release)
    order = (tree / "modules.order").read_bytes().splitlines(keepends=True)
    (tree / "modules.order").unlink()
    (tree / "modules.order").write_bytes(b"".join(line for n, line in enumerate(order) if n % 5 != 2))
    modules = sorted(p for p in (tree / "kernel").rglob("*.ko*"))
    for number, path in enumerate(modules[::97]):
        data = materialise(path)
        stem = path.name.split(".ko")[0]
        if number % 3 == 0:
            (path.parent / f"{stem}.ko").write_bytes(data)
        elif number % 3 == 1:
            (path.parent / f"{stem}.ko.xz").write_bytes(lzma.compress(data, check=lzma.CHECK_CRC32))
        else:
            (path.parent / f"{stem}.ko.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    updates = tree / "updates" / "drivers"
    updates.mkdir(parents=True)
    originals = sorted(kernel.modules_dir.joinpath("kernel").rglob("*.ko*"))
    usb_storage = next(p for p in originals if p.name.startswith("usb-storage.ko"))
    shutil.copyfile(usb_storage, updates / usb_storage.name)
    scsi_mod = next(p for p in originals if p.name.startswith("scsi_mod.ko"))
    plain = scsi_mod.read_bytes()
    if plain.startswith(b"\xfd7zXZ\x00"):
        plain = lzma.decompress(plain)
    (updates / "scsi_mod.ko.xz").write_bytes(lzma.compress(plain))
    return root, tree


def test_deps_equal_depmod_on_a_variant_tree(kernel: KernelTarget, variant_tree: tuple[Path, Path]) -> None:
    root, tree = variant_tree
    expected = depmod_sections(root, kernel.release)
    ours = kmh_files(tree)
    assert ours["modules.dep"] == expected["modules.dep"]
    assert ours["modules.symbols"] == expected["modules.symbols"]
    text = ours["modules.dep"].decode()
    assert "\nupdates/drivers/usb-storage.ko" in text or text.startswith("updates/drivers/usb-storage")
    assert "kernel/drivers/usb/storage/usb-storage.ko" not in text
    assert ".ko.zst:" in text and "updates/drivers/scsi_mod.ko.xz:" in text


def test_modules_missing_from_modules_order_come_last(variant_tree: tuple[Path, Path]) -> None:
    _root, tree = variant_tree
    listed = {line.strip() for line in (tree / "modules.order").read_text().splitlines()}
    order = [module.uncompressed_relpath for module in ModuleTree.scan(tree, read_symbols=False)]
    in_order = [relpath in listed for relpath in order]
    first_missing = in_order.index(False)
    assert not any(in_order[first_missing:])
    missing = order[first_missing:]
    assert len(missing) > 500
    assert missing != sorted(missing)  # hash order, neither alphabetical ...


@pytest.fixture()
def small_farm(kernel_61: KernelTarget, tmp_path: Path) -> tuple[Path, Path]:
    """The usb and scsi modules of the 6.1 tree only (with their modules.order lines)."""
    source = kernel_61.modules_dir
    tree = tmp_path / "lib" / "modules" / kernel_61.release
    keep = [
        line
        for line in (source / "modules.order").read_text().splitlines()
        if "/usb/" in line or "/scsi/" in line
    ]
    for relpath in keep:
        (tree / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tree / relpath).symlink_to(source / relpath)
    (tree / "modules.order").write_text("".join(line + "\n" for line in keep))
    return tmp_path, tree


def test_no_modules_order_means_hash_order(kernel_61: KernelTarget, small_farm: tuple[Path, Path]) -> None:
    root, tree = small_farm
    (tree / "modules.order").unlink()
    assert kmh_files(tree)["modules.dep"] == depmod_sections(root, kernel_61.release)["modules.dep"]


def test_modules_order_without_final_newline_is_ignored(
    kernel_61: KernelTarget, small_farm: tuple[Path, Path]
) -> None:
    root, tree = small_farm
    text = (tree / "modules.order").read_text()
    (tree / "modules.order").write_text(text.rstrip("\n"))
    ours = kmh_files(tree)["modules.dep"]
    assert ours == depmod_sections(root, kernel_61.release)["modules.dep"]


def test_graph_matches_modprobe_show_depends(kernel_61: KernelTarget, small_farm: tuple[Path, Path]) -> None:
    root, tree = small_farm
    subprocess.run(["depmod", "-b", str(root), kernel_61.release], check=True)
    for name in ("uas", "usb-storage", "ums-realtek", "sd_mod"):
        shown = subprocess.run(
            ["modprobe", "-d", str(root), "-S", kernel_61.release, "--show-depends", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        expected = [
            line.split()[1].rsplit("/", 1)[1] for line in shown.splitlines() if line.startswith("insmod")
        ]
        ours = [module.relpath.rsplit("/", 1)[1] for module in show_depends(tree, name)]
        assert ours == expected
    graph = run_kmh("deps", str(tree), "--graph", "uas")
    assert graph.returncode == 0, graph.stderr
    text = graph.stdout.decode()
    assert text.startswith("uas  kernel/drivers/usb/storage/uas.ko\n")
    assert "└── " in text and "usb_common" in text
    assert text.rstrip().endswith("kernel/drivers/usb/storage/uas.ko")


def test_unknown_module_for_graph_is_a_user_error(small_farm: tuple[Path, Path]) -> None:
    _root, tree = small_farm
    result = run_kmh("deps", str(tree), "--graph", "no_such_module")
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1 and "no_such_module" in result.stderr.decode()


def test_cycle_is_an_error_naming_the_cycle(
    kernel_61: KernelTarget, fixtures_61: dict[str, Path], tmp_path: Path
) -> None:
    tree = tmp_path / "lib" / "modules" / kernel_61.release
    (tree / "extra").mkdir(parents=True)
    for name in ("kmh_cyca", "kmh_cycb", "kmh_provider"):
        shutil.copyfile(fixtures_61[name], tree / "extra" / f"{name}.ko")
    depmod = subprocess.run(["depmod", "-n", "-b", str(tmp_path), kernel_61.release], capture_output=True)
    assert depmod.returncode != 0  # depmod refuses it too
    with pytest.raises(HarnessError, match=r"cycle.*kmh_cyca -> kmh_cycb -> kmh_cyca"):
        dependency_graph(tree)
    result = run_kmh("deps", str(tree))
    assert result.returncode == 2 and b"kmh_cyca -> kmh_cycb -> kmh_cyca" in result.stderr
    assert b"Traceback" not in result.stderr


def test_deps_of_a_non_tree_is_a_user_error(tmp_path: Path) -> None:
    result = run_kmh("deps", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and b"not a directory" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_kmh("deps", str(tmp_path / "empty"))
    assert result.returncode == 2 and b"no kernel modules" in result.stderr


def test_deps_accepts_a_kernel_target_name(kernel_61: KernelTarget) -> None:
    result = run_kmh("deps", "bookworm", "--graph", "uas")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "uas  kernel/drivers/usb/storage/uas.ko"
    assert "├── scsi_mod  kernel/drivers/scsi/scsi_mod.ko  (see above)" in lines
