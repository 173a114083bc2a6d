"""A run spec for a DKMS tree: every module the package declares, loaded together."""

from __future__ import annotations

from pathlib import Path

from harness.dkms.conf import declared_modules
from harness.lifecycle.spec import ModuleDef, ModuleSpec


def dkms_spec(directory: Path) -> ModuleSpec:
    """The package's last declared module is the one run; the others are its companions, loaded
    with it (in the order their symbols need). The last is usually the top of the stack
    (``ddcci-backlight`` on ``ddcci``, ``hdaps`` on ``thinkpad_ec``). All share the directory:
    it is built once, with the package's own MAKE[0]."""
    source = Path(directory).resolve()
    names = declared_modules(source)
    # Named as the kernel names them (``ddcci-backlight.ko`` is module ``ddcci_backlight``);
    # the build picks the .ko by either spelling.
    definitions = [ModuleDef(name=name.replace("-", "_"), source=source) for name in names]
    return ModuleSpec(module=definitions[-1], companions=tuple(definitions[:-1]), origin=str(directory))
