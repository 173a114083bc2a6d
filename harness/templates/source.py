"""ModuleSource: the sources of one out-of-tree module, as the build stage receives them.

It is a value: the module's name, its files (name -> text) and, once written, the directory that
holds them. The build stage takes ``source.directory``; later stages keep ``template`` and
``params`` to say in reports what was built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from harness.errors import HarnessError


@dataclass(frozen=True)
class ModuleSource:
    """One module's source tree, rendered from a template (or not yet written anywhere)."""

    #: The module name (``name.ko``, ``/sys/module/name``).
    name: str
    #: File name (relative, no directories) -> contents: ``name.c``, ``Kbuild``, ``Makefile``.
    files: Mapping[str, str]
    #: Where the files were written; None until :meth:`write`.
    directory: Path | None = None
    #: The template (or preset) it was rendered from, and the full resolved parameter values.
    template: str = ""
    params: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @property
    def c_file(self) -> str:
        return f"{self.name}.c"

    @property
    def ko_name(self) -> str:
        return f"{self.name}.ko"

    def write(self, out_dir: Path, *, force: bool = False) -> ModuleSource:
        """Write the files into ``out_dir`` (created if needed) and return the source with its directory.

        A non-empty directory is refused unless ``force``: the files would silently mix with
        someone's work. With ``force`` only this module's files are overwritten.
        """
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise HarnessError(f"{out_dir} exists and is not a directory")
        if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
            raise HarnessError(
                f"{out_dir} is not empty; choose another directory or pass --force to overwrite"
            )
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for file_name, text in self.files.items():
                (out_dir / file_name).write_text(text)
        except OSError as error:
            raise HarnessError(f"cannot write the module into {out_dir}: {error.strerror}") from None
        return replace(self, directory=out_dir.resolve())
