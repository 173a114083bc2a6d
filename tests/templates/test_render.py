"""Rendering: strings stay strings (checked by a real C compiler), templates print only checked values,
and a rendered module directory is written safely."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plumbum import local

from harness.errors import HarnessError
from harness.templates import ModuleSource, catalogue, render, write_module
from harness.templates.catalogue import get_template
from harness.templates.cvalues import Ident, UserText, c_int, c_string
from harness.templates.render import _environment

HOSTILE = [
    '"); evil(); ("',
    "*/ evil(); /*",
    "// evil();",
    "\\",
    '\\"',
    "trailing backslash\\",
    "line one\nline two\r\n",
    "%s%n%p%%",
    "??/ ??= ??' ??( trigraphs",
    "tab\there",
    "\x01\x1b[31mescape\x7f",
    "\\x41\\101 not escapes",
    "héllo wörld ✓ 日本",
    "#define X 1\n#include <evil.h>",
    "",
]


def _compile_and_dump(strings: list[str], tmp_path: Path) -> list[bytes]:
    """Compile the literals with gcc (warnings are errors) and return the bytes the program sees."""
    decls = "\n".join(f"static const char s{i}[] = {c_string(s)};" for i, s in enumerate(strings))
    dumps = "\n".join(f"\tdump(s{i}, sizeof(s{i}) - 1);" for i in range(len(strings)))
    program = f"""#include <stdio.h>
{decls}
static void dump(const char *s, unsigned long n)
{{
\tfor (unsigned long i = 0; i < n; i++)
\t\tprintf("%02x", (unsigned char)s[i]);
\tputchar('\\n');
}}
int main(void)
{{
{dumps}
\treturn 0;
}}
"""
    source = tmp_path / "strings.c"
    source.write_text(program)
    binary = tmp_path / "strings"
    local["gcc"]["-std=gnu11", "-Wall", "-Wextra", "-Wtrigraphs", "-Werror", "-o", binary, source]()
    lines = local[str(binary)]().split("\n")
    return [bytes.fromhex(line) for line in lines[: len(strings)]]


needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@needs_gcc
def test_hostile_strings_stay_strings_in_c(tmp_path: Path) -> None:
    assert _compile_and_dump(HOSTILE, tmp_path) == [s.encode() for s in HOSTILE]


@needs_gcc
@settings(max_examples=15, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=40), min_size=1))
def test_any_text_round_trips_through_the_c_compiler(
    tmp_path_factory: pytest.TempPathFactory, strings
) -> None:
    tmp_path = tmp_path_factory.mktemp("hyp")
    assert _compile_and_dump(strings, tmp_path) == [s.encode() for s in strings]


def test_string_literal_shape() -> None:
    assert c_string('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    assert c_string("é") == '"\\303\\251"'
    # An octal escape is always three digits, so a following digit cannot join it.
    assert c_string("\x01" + "7") == '"\\0017"'
    assert c_int(-(2**31)) == "(-2147483647 - 1)"


_C_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')


@pytest.mark.parametrize("template", ["hello", "params", "chardev", "misc", "procfs"])
def test_hostile_parameters_render_only_inside_literals(template: str) -> None:
    text_param = {"hello": "greeting", "params": "string_value"}.get(template, "message")
    params: dict[str, object] = {
        "author": "|".join(HOSTILE[:5]) + "evil",
        "description": "|".join(HOSTILE[5:10]) + "evil",
        text_param: "|".join(HOSTILE[10:]) + "evil",
    }
    c = render(template, "m", params).files["m.c"]
    assert c.count("evil") >= 5
    # With every complete string literal taken out, no trace of the input is left in the code.
    assert "evil" not in _C_STRING.sub('""', c)


# -- the guard on what templates may print ---------------------------------------------------------


@pytest.mark.parametrize("value", [UserText("x"), True, None, 1.5, "plain str", ["list"]])
def test_templates_cannot_print_unchecked_values(value: object) -> None:
    with pytest.raises(TypeError):
        _environment().from_string("{{ v }}").render(v=value)


def test_templates_may_print_checked_values() -> None:
    env = _environment()
    out = env.from_string("{{ i }} {{ n }} {{ s|c_string }} {{ b|c_bool }}").render(
        i=Ident("name"), n=-(2**31), s=UserText('q"'), b=False
    )
    assert out == 'name (-2147483647 - 1) "q\\"" false'


def test_undefined_names_are_errors() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        _environment().from_string("{{ missing }}").render()


# -- every template ------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [t.name for t in catalogue()])
def test_every_template_renders_with_defaults(template: str) -> None:
    source = render(template, "mymod")
    assert set(source.files) == {"mymod.c", "Kbuild", "Makefile"}
    assert source.files["Kbuild"].strip().endswith("obj-m := mymod.o")
    c = source.files["mymod.c"]
    if get_template(template).source == "kunit.c.j2":
        # KUnit runs the suite when the module goes live: no init/exit of its own.
        assert "MODULE_LICENSE(" in c and "kunit_test_suite(" in c
    else:
        assert "MODULE_LICENSE(" in c and "module_init(kmh_init);" in c and "module_exit(kmh_exit);" in c
    assert source.template == template
    # Nothing about this machine leaks into what users get.
    for text in source.files.values():
        assert "/tmp" not in text and "/home" not in text


def test_makefile_builds_with_plain_make_against_the_running_kernel_by_default() -> None:
    makefile = render("hello", "m").files["Makefile"]
    assert "KDIR ?= /lib/modules/$(shell uname -r)/build" in makefile
    assert re.search(r"^modules:\n\t\$\(MAKE\) -C \$\(KDIR\) M=\$\(CURDIR\) modules$", makefile, re.M)


def test_kernel_api_differences_are_in_the_c() -> None:
    c = render("chardev", "m").files["m.c"]
    assert "#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)\n\treturn class_create(KMH_DEVICE_NAME);" in c
    assert "#else\n\treturn class_create(THIS_MODULE, KMH_DEVICE_NAME);" in c
    assert (
        "#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)\nstatic char *kmh_devnode(const struct device" in c
    )


def test_failure_injection_is_opt_in() -> None:
    plain = render("chardev", "m").files["m.c"]
    injected = render("chardev", "m", {"inject_failures": "true"}).files["m.c"]
    assert (
        "module_param(fail_at" not in plain
        and "static inline bool kmh_fail(int step)\n{\n\treturn false;" in plain
    )
    assert "module_param(fail_at, int, 0444);" in injected
    for step in range(1, 6):
        assert f"kmh_fail({step})" in plain and f"kmh_fail({step})" in injected


def test_module_name_defaults_follow_the_module() -> None:
    assert render("chardev", "mydev").params["device_name"] == "mydev"
    assert render("chardev", "mydev", {"device_name": "other"}).params["device_name"] == "other"
    assert render("exporter", "ex").params["prefix"] == "ex"


def test_leak_variants_drop_exactly_the_named_cleanup() -> None:
    def exit_body(leak: str) -> str:
        c = render("chardev", "m", {"leak": leak}).files["m.c"]
        return c[c.index("static void __exit kmh_exit") :]

    assert "\tclass_destroy(kmh_class);" in exit_body("none")
    assert "\tunregister_chrdev_region(kmh_devt, 1);" in exit_body("none")
    assert "\tclass_destroy(kmh_class);" not in exit_body("class")
    assert "\tunregister_chrdev_region(kmh_devt, 1);" in exit_body("class")
    assert "\tunregister_chrdev_region(kmh_devt, 1);" not in exit_body("chrdev-region")
    assert "\tclass_destroy(kmh_class);" in exit_body("chrdev-region")
    assert "\tclass_destroy(kmh_class);" not in exit_body("all")
    assert "\tunregister_chrdev_region(kmh_devt, 1);" not in exit_body("all")


# -- writing -------------------------------------------------------------------------------------


def test_write_creates_the_directory(tmp_path: Path) -> None:
    source = write_module("hello", "m", tmp_path / "a" / "m")
    assert isinstance(source, ModuleSource)
    assert source.directory == (tmp_path / "a" / "m").resolve()
    assert sorted(p.name for p in source.directory.iterdir()) == ["Kbuild", "Makefile", "m.c"]
    assert (source.directory / "m.c").read_text() == source.files["m.c"]


def test_write_refuses_a_non_empty_directory_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(HarnessError, match="is not empty.*--force"):
        write_module("hello", "m", tmp_path)
    write_module("hello", "m", tmp_path, {"greeting": "again"}, force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert '"again"' in (tmp_path / "m.c").read_text()


def test_write_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(HarnessError, match="not a directory"):
        write_module("hello", "m", tmp_path / "f")


def test_stable_render_directories_are_named_by_content_and_reused(tmp_path):
    """kmh run renders into a directory named by the rendered content, so a re-run of the same
    spec gets the same path (kbuild's stable copies and the build cache key on it)."""
    from harness.templates.render import write_stable

    first = write_stable("hello", "stable_a", tmp_path)
    mtimes = {path.name: path.stat().st_mtime_ns for path in first.directory.iterdir()}
    again = write_stable("hello", "stable_a", tmp_path)
    assert again.directory == first.directory
    assert {path.name: path.stat().st_mtime_ns for path in again.directory.iterdir()} == mtimes
    other = write_stable("params", "stable_a", tmp_path)
    assert other.directory != first.directory and other.directory.name.startswith("stable_a-")
    (first.directory / "stable_a.c").write_text("edited by hand\n")
    repaired = write_stable("hello", "stable_a", tmp_path)
    assert repaired.directory == first.directory
    assert (repaired.directory / "stable_a.c").read_text() == repaired.files["stable_a.c"]
    assert not list(tmp_path.glob(".new-*"))
