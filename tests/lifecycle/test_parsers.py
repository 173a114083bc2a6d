"""Fast tests of the lifecycle's parsers: specs, /proc/modules lines, kmod errors, state diffs."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.lifecycle.guest import ProcModule, errno_name, explain_error, find_module
from harness.lifecycle.spec import load_spec, spec_from_dict
from harness.lifecycle.state import Snapshot, diff, taint_letters
from harness.paths import REPO_ROOT

PROC_MODULES = """\
kmh_consumer 16384 0 - Live 0xffffffffc0250000 (OE)
kmh_exporter 16384 1 kmh_consumer, Live 0xffffffffc0248000 (OE)
virtio_console 45056 0 - Live 0xffffffffc0214000
"""


def test_proc_modules_line():
    exporter = find_module(PROC_MODULES, "kmh-exporter")
    assert exporter == ProcModule("kmh_exporter", 16384, 1, ("kmh_consumer",), "Live", "OE")
    assert "used by kmh_consumer" in exporter.describe()
    assert find_module(PROC_MODULES, "virtio_console").taint == ""
    assert find_module(PROC_MODULES, "absent") is None


def test_kmod_error_messages_name_the_errno():
    assert errno_name("insmod: ERROR: could not insert module x.ko: No such device") == "ENODEV"
    assert errno_name("rmmod: ERROR: Module x is in use") == ""
    assert errno_name("insmod: ERROR: could not insert module x.ko: Invalid parameters") == "EINVAL"
    assert explain_error("insmod: ERROR: could not insert module x.ko: File exists\n") == (
        "insmod: ERROR: could not insert module x.ko: File exists (EEXIST)"
    )


def test_every_shipped_spec_parses():
    for path in (REPO_ROOT / "modules").rglob("*.toml"):
        spec = load_spec(path)
        assert spec.name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"module": {"template": "hello"}, "expect": {"load_dmseg": []}}, "unknown key"),
        ({"module": {"template": "nope"}}, "no template named 'nope'"),
        ({"module": {"template": "hello", "name": "1bad"}}, "identifier"),
        ({"module": {"template": "hello", "source": "."}}, "exactly one of"),
        ({"module": {"template": "hello"}, "load": {"method": "dlopen"}}, "method must be"),
        ({"module": {"template": "hello"}, "expect": {"load_dmesg": ["("]}}, "bad regular expression"),
        ({"module": {"template": "hello"}, "outcome": {"verdict": "maybe"}}, "verdict must be"),
        ({}, r"\[module\]: missing"),
        ({"module": {"template": "hello", "params": {"bogus": 1}}}, "has no parameter 'bogus'"),
        ({"module": {"template": "params", "params": {"int_value": "many"}}}, "int_value"),
        ({"module": {"template": "kmem"}, "load": {"inject_faults": "yes"}}, "inject_faults must be true"),
    ],
)
def test_spec_errors_are_clear(tmp_path, data, message):
    with pytest.raises(HarnessError, match=message):
        spec_from_dict(data, origin="t.toml", base=tmp_path)


def test_missing_and_malformed_spec_files(tmp_path):
    with pytest.raises(HarnessError, match="no such spec file"):
        load_spec(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[module\n")
    with pytest.raises(HarnessError, match="not valid TOML"):
        load_spec(broken)


BEFORE = """\
@@devices
Character devices:
  1 mem
@@misc
183 hw_random
@@class
/sys/class/misc/hw_random
@@dev
/dev/null
@@proc
/proc/devices
@@debugfs
@@modules
virtio_console
@@taint
0
"""


def test_state_diff_names_leftovers_and_ignores_expected_taint():
    before = Snapshot.parse(BEFORE)
    leaked = BEFORE.replace("  1 mem\n", "  1 mem\n245 kmh_leaky\n").replace(
        "/sys/class/misc/hw_random\n", "/sys/class/misc/hw_random\n/sys/class/kmh_leaky/kmh_leaky\n"
    )
    after = Snapshot.parse(
        leaked.replace("@@taint\n0", "@@taint\n12288") + "@@kallsyms\n0 t f [virtio_console]\n"
    )
    changes = diff(before, after)
    assert not changes.clean
    text = changes.describe()
    assert "left behind in /proc/devices: 245 kmh_leaky" in text
    assert "left behind in /sys/class: /sys/class/kmh_leaky/kmh_leaky" in text
    assert "tainted" not in text  # O and E are the expected marks of any out-of-tree module
    assert diff(before, Snapshot.parse(BEFORE.replace("@@taint\n0", "@@taint\n512"))).new_taint == "W"
    assert diff(before, Snapshot.parse(BEFORE)).clean
    assert taint_letters(1 | 4096 | 8192) == "POE"
