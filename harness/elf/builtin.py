"""Module names a kernel target has already taken with built-in code.

A module cannot load under a name the kernel already has in ``/sys/module``: ``mod_sysfs_init``
finds the kobject and refuses (``-EINVAL``, "module is already loaded"). At boot the kernel makes
``/sys/module/NAME`` for built-in code in two cases (kernel/params.c): a parameter with sysfs
permissions (``param_sysfs_builtin``: NAME is the parameter's prefix before the dot, ``kernel``
for ``core_param``) and a ``MODULE_VERSION`` (``version_sysfs_builtin``). Both tables are in the
target's vmlinux, as the ``__param`` and ``__modver`` sections, so they are read from there: the
prefix is ``MODULE_PARAM_PREFIX``, which is not always the object's name (rcu's ``tree.c``
registers ``rcutree.*``), so modules.builtin.modinfo alone would guess wrong.

The other built-ins (modules.builtin, without sysfs entries) do not stop insmod, but modprobe
refuses them ("Module NAME is builtin"), which is worth a note.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from harness.kernels.target import KernelTarget

#: struct kernel_param (x86_64): name, mod, ops pointers, then u16 perm ... 40 bytes in all.
KERNEL_PARAM = struct.Struct("<QQQH6xQ")
#: struct module_version_attribute (x86_64): struct module_attribute (56 bytes), module_name, version.
MODULE_VERSION_ATTRIBUTE = struct.Struct("<56xQQ")


@functools.lru_cache(maxsize=16)
def sysfs_builtin_names(kernel: KernelTarget) -> frozenset[str]:
    """Names the kernel puts in /sys/module for built-in code at boot (see the module docstring).

    Read from the target's vmlinux; when it has no usable tables, from modules.builtin.modinfo's
    parameter names (close, but blind to ``MODULE_PARAM_PREFIX``).
    """
    try:
        with kernel.vmlinux.open("rb") as stream:
            names = _from_vmlinux(stream)
    except (OSError, ELFError, ValueError, struct.error):
        names = None
    return frozenset(names) if names is not None else _from_builtin_modinfo(kernel.modules_dir)


@functools.lru_cache(maxsize=16)
def builtin_module_names(kernel: KernelTarget) -> frozenset[str]:
    """Modules built into the target's kernel (modules.builtin), as module names."""
    try:
        lines = (kernel.modules_dir / "modules.builtin").read_text(errors="replace").split()
    except OSError:
        return frozenset()
    return frozenset(Path(line).name.removesuffix(".ko").replace("-", "_") for line in lines)


def _from_vmlinux(stream: BinaryIO) -> set[str] | None:
    elf = ELFFile(stream)
    params = elf.get_section_by_name("__param")
    if params is None:
        return None
    names: set[str] = set()
    data = params.data()
    for offset in range(0, len(data) - len(data) % KERNEL_PARAM.size, KERNEL_PARAM.size):
        name_address, _mod, _ops, perm, _arg = KERNEL_PARAM.unpack_from(data, offset)
        if perm == 0:
            continue
        name = _string_at(elf, stream, name_address)
        names.add(name.split(".", 1)[0] if "." in name else "kernel")
    versions = elf.get_section_by_name("__modver")
    if versions is not None:
        data = versions.data()
        size = MODULE_VERSION_ATTRIBUTE.size
        for offset in range(0, len(data) - len(data) % size, size):
            module_name, _version = MODULE_VERSION_ATTRIBUTE.unpack_from(data, offset)
            names.add(_string_at(elf, stream, module_name))
    return names


def _string_at(elf: ELFFile, stream: BinaryIO, address: int) -> str:
    """The NUL-terminated string at a kernel virtual address."""
    for offset in elf.address_offsets(address):
        stream.seek(offset)
        raw = stream.read(256).split(b"\0", 1)[0]
        return raw.decode("utf-8", "replace")
    raise ValueError(f"address {address:#x} is in no segment")


def _from_builtin_modinfo(modules_dir: Path) -> frozenset[str]:
    try:
        data = (modules_dir / "modules.builtin.modinfo").read_bytes()
    except OSError:
        return frozenset()
    names = set()
    for entry in data.split(b"\0"):
        module, _, key = entry.partition(b".")
        if key.startswith((b"parm=", b"parmtype=", b"version=")):
            names.add(module.decode("utf-8", "replace"))
    return frozenset(names)
