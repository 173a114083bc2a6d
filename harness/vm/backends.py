"""The guest backends by name, and how the runner asks for a guest of a kernel target.

A factory takes ``(kernel, debian_modules, python=False)`` and returns a started guest (a
:class:`~harness.vm.backend.VMBackend`). The runner only ever calls a factory, so tests hand it
scripted guests (:mod:`harness.vm.fake`) and users can add backends without touching it.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import HarnessError
from harness.kernels.target import KernelTarget

VMFactory = Callable[..., object]


def vagrant_vm(kernel: KernelTarget, debian: tuple[str, ...], python: bool = False):  # type: ignore[no-untyped-def]
    from harness.vm.vagrant import VagrantVM

    if python:
        raise HarnessError("network expectations ([[expect.links]]) need the QEMU backend's Python layer")
    vm = VagrantVM(kernel.suite or kernel.release)
    vm.start()
    if vm.box is not None and vm.box.release != kernel.release:
        release = vm.box.release
        vm.close()
        raise HarnessError(
            f"the Vagrant box runs {release}, the kernel target is {kernel.release}: rebuild the box "
            f"('kmh box build --kernel {kernel.suite or kernel.release} --rebuild') or update the target"
        )
    return vm


def qemu_vm(kernel: KernelTarget, debian: tuple[str, ...], python: bool = False):  # type: ignore[no-untyped-def]
    from harness.vm.qemu import VM, VMConfig

    vm = VM(kernel, VMConfig(extra_modules=debian, python=python))
    vm.start()
    return vm


BACKENDS: dict[str, VMFactory] = {
    "qemu": qemu_vm,
    "vagrant": vagrant_vm,
}


def factory_for(backend: str) -> VMFactory:
    """The factory of the backend named BACKEND; HarnessError naming the ones that exist."""
    if backend not in BACKENDS:
        raise HarnessError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    return BACKENDS[backend]
