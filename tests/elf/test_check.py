"""``kmh check`` / check_loadable verdicts on real modules built against the 6.1 target.

Each bad case is a module with exactly one defect, so each test can insist on the one reason it
expects (and no other): a rendered module on the wrong kernel, a proprietary module using a
GPL-only export, a deliberately missing symbol, a namespace not imported, a symbol only a
``--with`` module provides.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.elf import LoadCheck, check_loadable
from harness.kernels.target import KernelTarget
from tests.elf.elf_helpers import run_kmh


def kinds(result: LoadCheck) -> set[str]:
    return {reason.kind for reason in result.reasons}


def test_rendered_module_loads_on_its_own_kernel(rendered_hello_61: Path, kernel_61: KernelTarget) -> None:
    result = check_loadable(rendered_hello_61, kernel_61)
    assert result.loadable and result.reasons == ()
    assert result.load_first == ()
    cli = run_kmh("check", str(rendered_hello_61), "--kernel", "bookworm")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.decode().splitlines()[0] == f"{rendered_hello_61}: loadable on {kernel_61.release}"


def test_rendered_module_built_for_61_does_not_load_on_612(
    rendered_hello_61: Path, kernel_612: KernelTarget
) -> None:
    result = check_loadable(rendered_hello_61, kernel_612)
    assert not result.loadable
    assert kinds(result) == {"crc"}
    symbols = {reason.symbol for reason in result.reasons}
    assert {"module_layout", "_printk"} <= symbols
    assert any("built for 6.1.0-56-amd64" in note for note in result.notes)
    cli = run_kmh("check", str(rendered_hello_61), "--kernel", "bookworm-backports")
    assert cli.returncode == 1
    lines = cli.stdout.decode().splitlines()
    assert lines[0] == f"{rendered_hello_61}: NOT loadable on {kernel_612.release}"
    assert "  crc: disagrees about version of symbol module_layout" in "\n".join(lines)


def test_proprietary_module_using_gpl_only_export(
    fixtures_61: dict[str, Path], kernel_61: KernelTarget
) -> None:
    result = check_loadable(fixtures_61["kmh_gplonly"], kernel_61)
    assert kinds(result) == {"gpl-only"}
    (reason,) = result.reasons
    assert reason.symbol == "ktime_get"
    assert "'Proprietary' is not GPL-compatible" in reason.message


def test_missing_symbol(fixtures_61: dict[str, Path], kernel_61: KernelTarget) -> None:
    result = check_loadable(fixtures_61["kmh_missing"], kernel_61)
    assert [(r.kind, r.symbol) for r in result.reasons] == [("unknown-symbol", "kmh_no_such_symbol")]
    cli = run_kmh("check", str(fixtures_61["kmh_missing"]), "-k", kernel_61.release)
    assert cli.returncode == 1
    assert "  unknown-symbol: unknown symbol kmh_no_such_symbol" in cli.stdout.decode().splitlines()


def test_namespace_not_imported_and_load_order(fixtures_61: dict[str, Path], kernel_61: KernelTarget) -> None:
    result = check_loadable(fixtures_61["kmh_nsimport"], kernel_61)
    assert [(r.kind, r.symbol) for r in result.reasons] == [("namespace", "usb_stor_sense_invalidCDB")]
    assert "MODULE_IMPORT_NS(USB_STORAGE)" in result.reasons[0].message
    names = [path.name for path in result.load_first]
    assert names == ["usb-common.ko", "usbcore.ko", "scsi_common.ko", "scsi_mod.ko", "usb-storage.ko"]
    assert all(path.is_file() for path in result.load_first)


def test_symbol_from_a_with_directory(
    fixtures_61: dict[str, Path], kernel_61: KernelTarget, tmp_path: Path
) -> None:
    consumer = fixtures_61["kmh_consumer"]
    alone = check_loadable(consumer, kernel_61)
    assert [(r.kind, r.symbol) for r in alone.reasons] == [("unknown-symbol", "kmh_provider_value")]
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copyfile(fixtures_61["kmh_provider"], extra / "kmh_provider.ko")
    helped = check_loadable(consumer, kernel_61, [extra])
    assert helped.loadable
    assert helped.load_first == ((extra / "kmh_provider.ko").resolve(),)
    cli = run_kmh("check", str(consumer), "--kernel", "bookworm", "--with", str(extra), "--json")
    assert cli.returncode == 0
    data = json.loads(cli.stdout)
    assert data["loadable"] is True and data["load_first"] == [str((extra / "kmh_provider.ko").resolve())]


def test_json_verdict_lists_reasons(fixtures_61: dict[str, Path]) -> None:
    cli = run_kmh("check", str(fixtures_61["kmh_gplonly"]), "--json")
    assert cli.returncode == 1
    data = json.loads(cli.stdout)
    assert data["loadable"] is False and data["kernel"].startswith("6.1.")
    assert [reason["kind"] for reason in data["reasons"]] == ["gpl-only"]


def test_in_tree_module_loads_on_its_kernel_with_its_dependencies(kernel: KernelTarget) -> None:
    path = next(kernel.modules_dir.rglob("uas.ko*"))
    result = check_loadable(path, kernel)
    assert result.loadable, result.reasons
    assert [p.name.split(".ko")[0] for p in result.load_first] == [
        "usb-common",
        "usbcore",
        "scsi_common",
        "scsi_mod",
        "usb-storage",
    ]


def test_unusable_input_exits_2(tmp_path: Path, fixtures_61: dict[str, Path]) -> None:
    bogus = tmp_path / "bogus.ko"
    bogus.write_bytes(b"\x7fELF" + b"\0" * 100)
    for args in (
        [str(bogus)],
        [str(tmp_path / "absent.ko")],
        [str(fixtures_61["kmh_consumer"]), "--kernel", "no-such-kernel"],
    ):
        cli = run_kmh("check", *args)
        assert cli.returncode == 2, args
        assert len(cli.stderr.decode().splitlines()) == 1 and b"Traceback" not in cli.stderr


def _patched_copy(source: Path, directory: Path, old: bytes, new: bytes) -> Path:
    data = source.read_bytes()
    assert len(old) == len(new) and data.count(old) == 1
    copy = directory / source.name
    copy.write_bytes(data.replace(old, new))
    return copy


def test_vermagic_flags_mismatch(rendered_hello_61: Path, kernel_61: KernelTarget, tmp_path: Path) -> None:
    copy = _patched_copy(rendered_hello_61, tmp_path, b" SMP preempt mod_unload", b" SMP PREEMPT mod_unload")
    result = check_loadable(copy, kernel_61)
    assert [r.kind for r in result.reasons] == ["vermagic"]
    assert "'6.1.0-56-amd64 SMP PREEMPT mod_unload modversions'" in result.reasons[0].message


def test_module_without_versions_is_forced_on_a_force_load_kernel(
    rendered_hello_61: Path, kernel_61: KernelTarget, tmp_path: Path
) -> None:
    copy = _patched_copy(rendered_hello_61, tmp_path, b"\0__versions\0", b"\0__versionX\0")
    result = check_loadable(copy, kernel_61)
    assert result.loadable  # Debian sets CONFIG_MODULE_FORCE_LOAD=y: loaded, with a taint
    assert any("no __versions table" in note for note in result.notes)


def test_duplicate_export_with_a_with_module_is_caught_before_booting(
    fixtures_61: dict[str, Path], kernel_61: KernelTarget, tmp_path: Path
) -> None:
    """Issue 14 (7): the kernel refuses a second exporter of a symbol ("exports duplicate symbol X
    (owned by Y)", insmod says only ENOEXEC); check --with says so without a VM."""
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copyfile(fixtures_61["kmh_provider"], extra / "kmh_provider_old.ko")
    result = check_loadable(fixtures_61["kmh_provider"], kernel_61, [extra])
    assert [(r.kind, r.symbol) for r in result.reasons] == [("duplicate-export", "kmh_provider_value")]
    assert (
        "exports duplicate symbol kmh_provider_value (owned by kmh_provider_old)" in result.reasons[0].message
    )
    cli = run_kmh("check", str(fixtures_61["kmh_provider"]), "-k", kernel_61.release, "--with", str(extra))
    assert cli.returncode == 1
    assert "  duplicate-export: exports duplicate symbol kmh_provider_value" in cli.stdout.decode()
    alone = check_loadable(fixtures_61["kmh_provider"], kernel_61)
    assert alone.loadable and not alone.reasons


def test_a_check_without_tree_providers_reads_only_the_tree_index(
    rendered_hello_61: Path, kernel_61: KernelTarget
) -> None:
    """Issue 16: a module that needs nothing from the target's modules is checked from the tree
    index (who exports what); the whole tree, with what each of its 4000 modules needs, is read
    only for a module with providers in it, and then gives the same verdict as before."""
    from harness.elf import check

    check.target_tree.cache_clear()
    hello = check_loadable(rendered_hello_61, kernel_61)
    assert hello.loadable and hello.load_first == ()
    assert check.target_tree.cache_info().misses == 0, "the whole tree was read without providers in it"
    uas = check_loadable(next(kernel_61.modules_dir.rglob("uas.ko*")), kernel_61)
    assert check.target_tree.cache_info().misses == 1
    assert [p.name.split(".ko")[0] for p in uas.load_first][-1] == "usb-storage"


def test_tree_index_names_the_owner_depmod_names_and_follows_changed_files(
    kernel_61: KernelTarget, tmp_path: Path
) -> None:
    """The index's owner of each export is the dependency graph's (the later exporter wins), and
    a module file replaced in place (same name, new content) makes a new index, not a stale one."""
    from harness.elf.depgraph import DependencyGraph
    from harness.elf.treecache import cached_tree, tree_index

    tree = cached_tree(kernel_61.modules_dir)
    index = tree_index(kernel_61.modules_dir)
    graph = DependencyGraph(tree)
    assert len(index.exporters) == len(graph.owner) > 10_000
    assert all(index.owner(symbol) == owner.name for symbol, owner in graph.owner.items())
    assert index.owner(b"no_such_symbol_anywhere") is None

    root = tmp_path / "lib" / "modules" / kernel_61.release
    (root / "kernel").mkdir(parents=True)
    usbcore = next(kernel_61.modules_dir.rglob("usbcore.ko*"))
    storage = next(kernel_61.modules_dir.rglob("usb-storage.ko*"))
    shutil.copyfile(usbcore, root / "kernel" / usbcore.name)
    first = tree_index(root)
    assert first.owner(b"usb_register_driver") == "usbcore"
    assert tree_index(root) == first, "an unchanged tree comes from the cache"
    shutil.copyfile(storage, root / "kernel" / usbcore.name)  # same file name, other module's content
    second = tree_index(root)
    assert second.owner(b"usb_register_driver") is None
    assert second.owner(b"usb_stor_host_template_init") == "usbcore"


def test_an_unreadable_with_module_is_named_not_skipped_silently(
    fixtures_61: dict[str, Path], kernel_61: KernelTarget, tmp_path: Path
) -> None:
    """A corrupt .ko in a --with directory provides nothing; the verdict says which file and why."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "kmh_broken_dep.ko").write_bytes(fixtures_61["kmh_provider"].read_bytes()[:3000])
    result = check_loadable(fixtures_61["kmh_provider"], kernel_61, [extra])
    assert result.loadable
    (note,) = [n for n in result.notes if "--with module" in n]
    assert f"{extra / 'kmh_broken_dep.ko'} is unreadable" in note and "truncated or corrupt" in note
