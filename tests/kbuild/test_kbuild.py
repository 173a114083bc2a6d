"""Real kbuild runs against the kernel targets: batching, failure isolation, diagnostics."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from harness.errors import HarnessError
from harness.kbuild import build_modules

pytestmark = pytest.mark.kbuild

HELLO = """\
#include <linux/module.h>
#include <linux/init.h>
static int __init {name}_init(void) {{ pr_info("{name} in\\n"); return 0; }}
static void __exit {name}_exit(void) {{ pr_info("{name} out\\n"); }}
module_init({name}_init);
module_exit({name}_exit);
MODULE_LICENSE("GPL");
"""


def write_module(directory: Path, name: str, source: str, *, makefile: bool = False) -> Path:
    directory.mkdir(parents=True)
    (directory / f"{name}.c").write_text(source)
    if makefile:
        (directory / "Makefile").write_text(
            textwrap.dedent(f"""\
            ifneq ($(KERNELRELEASE),)
            obj-m := {name}.o
            else
            KDIR ?= /lib/modules/$(shell uname -r)/build
            default:
            \t$(MAKE) -C $(KDIR) M=$(CURDIR) modules
            endif
            """)
        )
    else:
        (directory / "Kbuild").write_text(f"obj-m := {name}.o\n")
    return directory


def write_exporter_pair(root: Path, exporter: str, consumer: str) -> tuple[Path, Path]:
    """Two module directories under ROOT: EXPORTER exports ``EXPORTER_value()`` (GPL), CONSUMER
    calls it in its init; for builds where one batch module resolves another's export."""
    function = f"{exporter}_value"
    exporter_dir = write_module(
        root / "exp",
        exporter,
        HELLO.format(name=exporter)
        + f"int {function}(void) {{ return 42; }}\nEXPORT_SYMBOL_GPL({function});\n",
    )
    consumer_source = HELLO.format(name=consumer).replace(
        f'pr_info("{consumer} in\\n");', f'pr_info("{consumer} %d\\n", {function}());'
    )
    consumer_dir = write_module(root / "cons", consumer, f"int {function}(void);\n" + consumer_source)
    return exporter_dir, consumer_dir


def modinfo(path: Path) -> dict[str, str]:
    with path.open("rb") as handle:
        data = ELFFile(handle).get_section_by_name(".modinfo").data()
    fields = [entry.decode() for entry in data.split(b"\0") if entry]
    return dict(field.split("=", 1) for field in fields)


def test_batch_builds_every_module_for_the_kernel(tmp_path, kernel):
    sources = [
        write_module(tmp_path / f"m{i}", f"batch{i}", HELLO.format(name=f"batch{i}")) for i in range(3)
    ]
    results = build_modules(sources, kernel, werror=True, build_root=tmp_path / "out")
    assert [r.ok for r in results] == [True, True, True]
    for index, result in enumerate(results):
        (module,) = result.modules
        assert module.name == f"batch{index}"
        info = modinfo(module.path)
        assert info["name"] == f"batch{index}"
        assert info["vermagic"].split()[0] == kernel.release


def test_broken_module_reports_diagnostics_in_the_users_file_and_others_still_build(tmp_path, kernel):
    good = write_module(tmp_path / "good", "good", HELLO.format(name="good"))
    broken_source = HELLO.format(name="broken") + "static int oops = undeclared_thing;\n"
    broken = write_module(tmp_path / "broken", "broken", broken_source)
    results = build_modules([good, broken], kernel, build_root=tmp_path / "out")
    assert results[0].ok and results[0].modules[0].path.name == "good.ko"
    assert not results[1].ok and not results[1].modules
    (error, *_) = results[1].errors
    assert error.file == broken / "broken.c"
    assert error.line == 8
    assert "undeclared_thing" in error.message


def test_warnings_are_reported_and_fail_with_werror(tmp_path, kernel_61):
    source = HELLO.format(name="warny").replace("return 0; }", "int unused; return 0; }")
    module = write_module(tmp_path / "warny", "warny", source)
    relaxed = build_modules([module], kernel_61, build_root=tmp_path / "a")[0]
    assert relaxed.ok
    assert any("unused variable" in w.message for w in relaxed.warnings)
    strict = build_modules([module], kernel_61, werror=True, build_root=tmp_path / "b")[0]
    assert not strict.ok
    assert strict.errors[0].file == module / "warny.c"


def test_users_own_makefile_directory_builds(tmp_path, kernel_61):
    module = write_module(tmp_path / "mine", "mine", HELLO.format(name="mine"), makefile=True)
    (result,) = build_modules([module], kernel_61, build_root=tmp_path / "out")
    assert result.ok, result.log
    assert modinfo(result.modules[0].path)["name"] == "mine"


def test_exporter_and_consumer_in_one_batch_resolve_each_other(tmp_path, kernel_61):
    exporter, consumer = write_exporter_pair(tmp_path, "exp", "cons")
    results = build_modules([exporter, consumer], kernel_61, werror=True, build_root=tmp_path / "out")
    assert all(r.ok for r in results), results[1].log
    assert modinfo(results[1].modules[0].path)["depends"] == "exp"


def test_not_a_module_directory_is_a_clear_error(tmp_path, kernel_61):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no Kbuild or Makefile"):
        build_modules([tmp_path / "empty"], kernel_61)
    with pytest.raises(HarnessError, match="not a module directory"):
        build_modules([tmp_path / "missing"], kernel_61)
