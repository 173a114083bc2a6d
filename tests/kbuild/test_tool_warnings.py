"""objtool's and modpost's lines as each kernel era prints them (taken from real builds against
6.1, 6.12 and 7.3 headers), attributed to the module directory and the object they name."""

from __future__ import annotations

from pathlib import Path

from harness.kbuild.diagnostics import failure_excerpt, modpost_diagnostics

COPY = Path("/cache/build/6.1.0-56-amd64/umbrella/obj-38ac1fd0ad")
SOURCE = Path("/home/me/obj")
INIT = "(section: .init.text)"
LOG = f"""\
make: Entering directory '/kernels/6.1.0-56-amd64/usr/src/linux-headers-6.1.0-56-amd64'
  CC [M]  {COPY}/o.o
{COPY}/t.o: warning: objtool: naked+0x5: 'naked' return found in RETHUNK build
WARNING: modpost: {COPY}/o.o: section mismatch in reference: ptr (section: .data) -> o_init {INIT}
WARNING: modpost: {COPY}/o: section mismatch in reference: ptr+0x0 (section: .data) -> o_init {INIT}
WARNING: modpost: {COPY}/o.ko: missing MODULE_DESCRIPTION()
ERROR: modpost: "missing_symbol" [{COPY}/o.ko] undefined!
make: Leaving directory '/kernels/6.1.0-56-amd64/usr/src/linux-headers-6.1.0-56-amd64'
"""


def test_objtool_and_modpost_lines_of_every_era_are_attributed():
    found = modpost_diagnostics(LOG, lambda module: SOURCE if module == "o" else None, {COPY: SOURCE})
    messages = [(d.file, d.severity, d.message.split(":")[0]) for d in found[SOURCE]]
    assert (SOURCE / "t.o", "warning", "objtool") in messages
    assert (SOURCE / "o.o", "warning", "modpost") in messages  # 6.1 names the object
    assert (SOURCE / "o", "warning", "modpost") in messages  # 6.12 drops the suffix
    assert (SOURCE / "o.ko", "warning", "modpost") in messages  # 7.x names the module
    assert (SOURCE / "Kbuild", "error", '"missing_symbol" [') in [
        (d.file, d.severity, d.message[:18]) for d in found[SOURCE]
    ]
    assert len(found[SOURCE]) == 5


def test_failure_excerpt_drops_makes_noise():
    excerpt = failure_excerpt(LOG)
    assert "Entering directory" not in excerpt and "CC [M]" not in excerpt
    assert "undefined!" in excerpt
    assert "built no .ko" in failure_excerpt(
        "make: Entering directory '/k'\n  MODPOST x\nmake: Leaving directory '/k'\n"
    )
