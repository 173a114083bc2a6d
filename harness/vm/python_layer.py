"""The optional Python layer of the guest image: Debian's python3.11 plus pyroute2.

Only specs that check network devices over netlink need Python in the guest, and Python costs
boot time (~20 MB more initramfs to unpack under TCG), so this layer is added to a VM only when
its config asks for it (``VMConfig(python=True)``); plain runs keep the small image.

The interpreter, its standard library and pyroute2 come from the Debian archive the way the
kernels do: downloaded through the harness's private apt view, unpacked with ``dpkg-deb -x``,
never installed on the host. They keep Debian's paths (``/usr/bin/python3.11``,
``/usr/lib/python3.11``, ``/usr/lib/python3/dist-packages``), so the interpreter finds its
prefix without help. The shared libraries they load are the host's, resolved with ``ldd``
exactly like the base layer's kmod: the guest's libc *is* the host's (base layer), and a libm or
libssl must match the libc it runs with.

Everything is compiled to ``.pyc`` on the host (unchecked-hash, so the cpio's zero mtimes do not
matter): compiling ~400 modules inside a TCG guest would cost seconds on every run. The layer is
cached under ``<cache>/images/python-<key>.cpio``, keyed by the package versions and the host
libraries, and shared by every kernel target (nothing in it depends on the kernel).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import cache_root
from harness.vm import cpio

# Shared with the base layer on purpose: same host-library rule, same atomic cache writes.
from harness.vm.image import HOST_PROGRAMS, _cached, _shared_libraries, _which
from harness.vm.stublib import stubbed

#: Bump when the layout of the layer changes.
LAYER_VERSION = "3"  # 3: brings libcrypto itself (the base layer has a stub)
PYTHON_VERSION = "3.11"
#: The guest interpreter, by absolute path (the guest's busybox sh prefers applets to PATH).
GUEST_PYTHON = f"/usr/bin/python{PYTHON_VERSION}"
PACKAGES = (
    f"python{PYTHON_VERSION}-minimal",
    f"libpython{PYTHON_VERSION}-minimal",
    f"libpython{PYTHON_VERSION}-stdlib",
    "python3-pyroute2",
)
#: Parts of the unpacked packages a netlink check never imports (tests, GUI, packaging tools,
#: docs). pyroute2 imports every plugin it registers (ndb → sqlite3, asyncio → ssl, ...), so
#: the rest of the standard library stays.
PRUNE = (
    "usr/share",
    "etc",
    f"usr/lib/python{PYTHON_VERSION}/test",
    f"usr/lib/python{PYTHON_VERSION}/idlelib",
    f"usr/lib/python{PYTHON_VERSION}/tkinter",
    f"usr/lib/python{PYTHON_VERSION}/turtledemo",
    f"usr/lib/python{PYTHON_VERSION}/ensurepip",
    f"usr/lib/python{PYTHON_VERSION}/lib2to3",
    f"usr/lib/python{PYTHON_VERSION}/pydoc_data",
    f"usr/lib/python{PYTHON_VERSION}/config-{PYTHON_VERSION}-x86_64-linux-gnu",
    f"usr/lib/python{PYTHON_VERSION}/sitecustomize.py",  # a link into /etc (apport hooks)
)
#: Extension modules nothing here imports, and the libraries only they would drag in (Berkeley
#: DB, NIS/Kerberos, curses panels, audio, crypt(3)), plus pyroute2's command-line tools.
PRUNE_GLOBS = (
    *(
        f"usr/lib/python{PYTHON_VERSION}/lib-dynload/{name}.cpython-*.so"
        for name in (
            "*_test*",
            "xxlimited*",
            "_xxsubinterpreters",
            "_dbm",
            "nis",
            "_curses",
            "_curses_panel",
            "ossaudiodev",
            "audioop",
            "_crypt",
        )
    ),
    "usr/bin/pyroute2-*",
    "usr/bin/ss2",
)


def _archive():  # type: ignore[no-untyped-def]
    from harness.kernels.store import KernelStore

    # The guest's userland comes from the host's release (bookworm), like its busybox and kmod.
    return KernelStore().archive.view("bookworm")


def resolve_packages() -> list[tuple[str, str]]:
    """The newest version of each package in the archive (package lists refreshed when stale).

    apt-cache takes about a second per package here, and this runs at every Python VM start, so
    the answer is remembered until the package lists change.
    """
    archive = _archive()
    try:
        archive.update()
    except HarnessError:
        pass  # offline: the lists we already have still name versions we may have downloaded
    stamp = archive.state_dir / "updated"
    lists = str(stamp.stat().st_mtime_ns) if stamp.exists() else ""
    remembered = cache_root() / "images" / "python-packages.json"
    try:
        saved = json.loads(remembered.read_text())
        if lists and saved["lists"] == lists and saved["names"] == list(PACKAGES):
            return [(name, version) for name, version in saved["packages"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    resolved = []
    for package in PACKAGES:
        versions = archive.versions(package)
        if not versions:
            raise HarnessError(f"the Debian archive offers no {package}; the guest Python layer needs it")
        resolved.append((package, versions[0].version))
    remembered.parent.mkdir(parents=True, exist_ok=True)
    remembered.write_text(json.dumps({"lists": lists, "names": list(PACKAGES), "packages": resolved}))
    return resolved


def python_layer() -> Path:
    """The cached Python layer (built on first use: download, unpack, prune, compile, pack)."""
    packages = resolve_packages()
    key = hashlib.sha256(f"{LAYER_VERSION}|{packages}".encode()).hexdigest()[:16]
    path = cache_root() / "images" / f"python-{key}.cpio"
    manifest = path.with_suffix(".libs")
    if path.exists() and (not manifest.exists() or manifest.read_text() != _fingerprint(_listed(manifest))):
        path.unlink()  # a host library it copied has changed since: rebuild
    return _cached(path, lambda out: _build(out, packages, manifest))


def _fingerprint(paths: list[Path]) -> str:
    """One line per host library: path, size, mtime (a changed or missing one changes the text)."""
    lines = []
    for path in paths:
        st = path.stat() if path.exists() else None
        lines.append(f"{path}\t{st.st_size if st else -1}\t{st.st_mtime_ns if st else -1}")
    return "\n".join(lines) + "\n"


def _listed(manifest: Path) -> list[Path]:
    if not manifest.exists():
        return []
    return [Path(line.split("\t")[0]) for line in manifest.read_text().splitlines() if line]


def _build(out, packages: list[tuple[str, str]], manifest: Path) -> None:  # type: ignore[no-untyped-def]
    debs = _archive().download(packages)
    with tempfile.TemporaryDirectory(prefix="kmh-python-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
        _prune(root)
        _compile(root)
        entries = _tree_entries(root)
        libraries = _host_libraries(root)
        entries += [cpio.regular(str(lib), lib.resolve().read_bytes(), 0o755) for lib in libraries]
        manifest.write_text(_fingerprint(libraries))
        entries.append(cpio.symlink("usr/bin/python3", f"python{PYTHON_VERSION}"))
        cpio.write_archive(out, entries, first_inode=500_000)


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
    except FileNotFoundError:
        raise HarnessError(
            f"building the guest Python layer needs {argv[0]}, which is not installed"
        ) from None
    if result.returncode != 0:
        raise HarnessError(f"building the guest Python layer: {what} failed", details=result.stderr)
    return result.stdout


def _prune(root: Path) -> None:
    for relative in PRUNE:
        path = root / relative
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    for pattern in PRUNE_GLOBS:
        for path in root.glob(pattern):
            path.unlink()


def _compile(root: Path) -> None:
    """Byte-compile with the unpacked interpreter itself (its magic number is the guest's).

    The .pyc files go beside the sources (``-b``) and the sources are dropped: a sourceless
    import needs exactly that layout, and it halves the layer (every byte costs boot time).
    """
    python = root / GUEST_PYTHON.lstrip("/")
    env = {"PYTHONHOME": str(root / "usr"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for directory in (f"/usr/lib/python{PYTHON_VERSION}", "/usr/lib/python3/dist-packages"):
        tree = root / directory.lstrip("/")
        argv = [str(python), "-S", "-m", "compileall", "-q", "-b", "-j0"]
        argv += ["--invalidation-mode", "unchecked-hash", "-d", directory, str(tree)]
        _run(argv, f"compiling {directory}", env)
        for source in tree.rglob("*.py"):
            if source.with_suffix(".pyc").is_file():
                source.unlink()
        for cache in list(tree.rglob("__pycache__")):
            shutil.rmtree(cache)


def _tree_entries(root: Path) -> list[cpio.Entry]:
    entries: list[cpio.Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            relative = str(path.relative_to(root))
            if path.is_symlink():
                target = os.readlink(path)
                resolved = (path.parent / target).resolve() if not target.startswith("/") else None
                if resolved is not None and resolved.exists():
                    entries.append(cpio.symlink(relative, target))
            elif path.is_dir():
                entries.append(cpio.directory(relative))
            elif path.is_file():
                entries.append(cpio.regular(relative, path.read_bytes(), path.stat().st_mode & 0o777))
    return entries


def _host_libraries(root: Path) -> list[Path]:
    """The host libraries the interpreter and its extension modules load, minus the base layer's."""
    base: set[Path] = set()
    for program in HOST_PROGRAMS.values():
        # A library the base layer only stubs (libcrypto, for kmod) comes here for real.
        base.update(lib for lib in _shared_libraries(_which(program)) if not stubbed(lib))
    binaries = [root / GUEST_PYTHON.lstrip("/")]
    binaries += sorted((root / f"usr/lib/python{PYTHON_VERSION}/lib-dynload").glob("*.so"))
    needed: set[Path] = set()
    for binary in binaries:
        missing = _missing_libraries(binary)
        if missing:
            raise HarnessError(
                f"the guest Python layer needs {', '.join(missing)} (for {binary.name}), "
                "which this host does not have",
                details="The layer takes shared libraries from the host, like the base layer does for kmod.",
            )
        needed.update(_shared_libraries(binary))
    return sorted(needed - base)


def _missing_libraries(binary: Path) -> list[str]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if "not found" in line]
