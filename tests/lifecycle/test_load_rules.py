"""Issue 14 load-side rules on the scripted guest (milliseconds, no VM): what a failed load of
several modules leaves behind, and the commands that load and unload tree modules."""

from __future__ import annotations

from pathlib import Path

from harness.lifecycle.cycle import GuestModules
from harness.vm.fake import FakeVM, Reply, ScriptedTransport
from tests.lifecycle.test_rules import cycle_run, hello_script


def _modules(tmp_path: Path, *names: str) -> GuestModules:
    built = {}
    for name in names:
        built[name] = tmp_path / f"{name}.ko"
        built[name].write_bytes(b"\x7fELF fake")
    return GuestModules(built=built, order=list(names))


def test_a_failed_load_takes_out_the_companions_it_loaded(tmp_path: Path) -> None:
    refused = Reply(
        1,
        stderr="insmod: ERROR: could not insert module hello_kmh.ko: Unknown symbol in module\n",
        log=("hello_kmh: Unknown symbol kmh_gone (err -2)",),
        model=False,
    )
    transport = ScriptedTransport([(r"insmod .*hello_kmh\.ko", refused)])
    run, cycle = cycle_run(FakeVM(transport), _modules(tmp_path, "kmh_comp", "hello_kmh"))
    assert run.failure is not None and run.failure.name == "load"
    assert run.failure.message.endswith(
        "Unknown symbol in module (ENOENT); kernel: hello_kmh: Unknown symbol kmh_gone (err -2)"
    ), run.failure.message
    assert "/sbin/rmmod kmh_comp" in transport.calls
    assert transport.model.modules == [] and cycle.reusable, "the next module starts from a clean kernel"


def test_tree_modules_are_modprobed_first_and_removed_after(tmp_path: Path) -> None:
    modules = _modules(tmp_path, "hello_kmh")
    modules.tree_roots = ["videodev"]
    transport = ScriptedTransport(hello_script())
    run, _cycle = cycle_run(FakeVM(transport), modules)
    assert run.verdict == "pass", run.failure
    loads = [call for call in transport.calls if "modprobe videodev" in call or "insmod" in call]
    assert loads[:2] == [
        "/sbin/modprobe videodev",
        "/sbin/insmod /lib/modules/6.1.0-test-amd64/extra/hello_kmh.ko",
    ]
    unload = next(call for call in transport.calls if call.startswith("/sbin/rmmod hello_kmh"))
    assert unload == "/sbin/rmmod hello_kmh && { /sbin/modprobe -r videodev || true; }"
