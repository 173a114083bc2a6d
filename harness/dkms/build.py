"""Building a DKMS source tree for one kernel, the way ``dkms build`` does.

dkms copies the source to ``$dkms_tree/$PACKAGE_NAME/$PACKAGE_VERSION/build``, applies the
``PATCH[]`` files from ``patches/`` there, runs ``PRE_BUILD`` and then ``MAKE[0]`` as a shell
command line in that directory, with its leading ``make`` turned into ``make -jN
KERNELRELEASE=$kernelver``, and takes ``BUILT_MODULE_LOCATION[i]/BUILT_MODULE_NAME[i].ko``. Here
the same happens in a bubblewrap sandbox (the kernel's per-suite build environment, or the host's
root) where ``/lib/modules/$kernelver/build`` is the target's headers, since many packages'
Makefiles look there. The copy is kept per (package, kernel) with the sources' mtimes, so a
second build is as incremental as the package's Makefile allows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.buildenv import HOST, command_for
from harness.buildenv.sandbox import bwrap
from harness.buildenv.store import EnvironmentStore
from harness.dkms.conf import DkmsConf, is_dkms_tree, read_dkms_conf
from harness.errors import HarnessError
from harness.kbuild.diagnostics import Diagnostic, failure_excerpt, modpost_diagnostics, parse_diagnostics
from harness.kbuild.kbuild import BUILD_PRODUCTS, BuildResult, BuiltModule, build_modules
from harness.kernels.target import KernelTarget
from harness.lifecycle.result import ModuleRun
from harness.locking import exclusive
from harness.paths import cache_root

#: How a result's log starts when its package excludes the kernel (BUILD_EXCLUSIVE_*).
SKIPPED = "skipped: "
#: How long one package's MAKE[0] may run.
MAKE_TIMEOUT = 1800


@dataclass
class DkmsBuild:
    """One package built for one kernel: a BuildResult per declared module, or why it was skipped."""

    conf: DkmsConf
    kernel: KernelTarget
    build_dir: Path
    results: dict[str, BuildResult] = field(default_factory=dict)
    log: str = ""

    @property
    def skipped(self) -> str:
        return self.conf.excluded

    @property
    def ok(self) -> bool:
        return not self.skipped and bool(self.results) and all(r.ok for r in self.results.values())


def default_dkms_tree(kernel: KernelTarget) -> Path:
    return cache_root() / "dkms" / kernel.release


def build_dkms(
    source: Path, kernel: KernelTarget, *, werror: bool = False, dkms_tree: Path | None = None
) -> DkmsBuild:
    """Build every module SOURCE's dkms.conf declares for KERNEL (nothing, if BUILD_EXCLUSIVE
    rules the kernel out: the result says why). Never raises for C that does not compile."""
    source = Path(source).resolve()
    tree = dkms_tree or default_dkms_tree(kernel)
    conf = read_dkms_conf(source, kernel, tree)
    build_dir = tree / conf.package / conf.version / "build"
    outcome = DkmsBuild(conf=conf, kernel=kernel, build_dir=build_dir)
    if conf.excluded:
        return outcome
    with exclusive(build_dir.parent):
        _copy(source, build_dir)
        log = _patch(conf, build_dir)
        argv, environment = _sandboxed(kernel, conf, build_dir, tree)
        try:
            done = subprocess.run(
                argv,
                cwd=build_dir,
                capture_output=True,
                timeout=MAKE_TIMEOUT,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{source}: MAKE[0] did not finish within {MAKE_TIMEOUT} s") from None
        log += done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    outcome.log = log
    mapping = {build_dir: source}
    found = parse_diagnostics(log, mapping).get(source, [])
    found += modpost_diagnostics(log, lambda _module: source, mapping).get(source, [])
    for module in conf.modules:
        ko = build_dir / module.location / f"{module.name}.ko"
        result = BuildResult(
            source_dir=source / module.location if module.location else source,
            kernel=kernel,
            build_dir=ko.parent,
            diagnostics=list(found),
            log=log,
            environment=environment,
            werror=werror,
            project_root=source,
        )
        if done.returncode == 0 and ko.is_file():
            result.modules = [BuiltModule(name=module.name, path=ko, kernel=kernel, source_dir=source)]
        elif done.returncode == 0:
            result.diagnostics.append(
                Diagnostic(
                    source / "dkms.conf",
                    0,
                    None,
                    "error",
                    f"MAKE[0] did not produce {module.location}{module.name}.ko",
                )
            )
        outcome.results[module.name] = result
    return outcome


def _copy(source: Path, build_dir: Path) -> None:
    """Copy the package's tree like dkms's ``cp -a`` (symlinks stay symlinks: Debian's packages
    link their README into /usr/share/doc), keeping mtimes so the package's make stays
    incremental; files whose mtime and size did not change are not copied again, so a patched
    copy is not un-patched by the refresh."""
    ignore = shutil.ignore_patterns(*BUILD_PRODUCTS)
    for directory, dirnames, filenames in os.walk(source):
        relative = Path(directory).relative_to(source)
        skipped = ignore(directory, dirnames + filenames)
        dirnames[:] = [d for d in dirnames if d not in skipped]
        (build_dir / relative).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if name in skipped:
                continue
            origin, target = Path(directory) / name, build_dir / relative / name
            if origin.is_symlink():
                if not target.is_symlink():
                    target.unlink(missing_ok=True)
                    target.symlink_to(os.readlink(origin))
                continue
            if not origin.is_file():
                raise HarnessError(
                    f"{source}: {relative / name} is not a regular file, a directory or a symlink"
                )
            if target.is_file() and not target.is_symlink():
                if (target.stat().st_mtime_ns, target.stat().st_size) == (
                    origin.stat().st_mtime_ns,
                    origin.stat().st_size,
                ):
                    continue
            shutil.copy2(origin, target)


def _patch(conf: DkmsConf, build_dir: Path) -> str:
    """Apply PATCH[] to the copy (never to the user's tree), as dkms does: ``patch -p1`` from
    ``patches/``. The copy is refreshed from the sources first, so a patch applies once."""
    log = ""
    for name in conf.patches:
        patch = conf.source / "patches" / name
        if not patch.is_file():
            raise HarnessError(f"{conf.source}/dkms.conf: PATCH names {name}, which is not in patches/")
        done = subprocess.run(
            ["patch", "-p1", "--forward", "-r", "-", "-i", str(patch)],
            cwd=build_dir,
            capture_output=True,
            check=False,
        )
        output = done.stdout.decode(errors="replace")
        if done.returncode != 0 and "Reversed (or previously applied)" not in output:
            raise HarnessError(f"{conf.source}: PATCH {name} does not apply: {failure_excerpt(output, 3)}")
        log += output
    return log


def _sandboxed(kernel: KernelTarget, conf: DkmsConf, build_dir: Path, tree: Path) -> tuple[list[str], str]:
    """MAKE[0] as dkms runs it, inside bubblewrap with /lib/modules/$kernelver/build."""
    make = conf.make
    if make.startswith("make"):
        make = f"make -j{os.cpu_count() or 1} KERNELRELEASE={kernel.release}{make[len('make') :]}"
    script = f"set -e\n{conf.pre_build}\n{make}\n" if conf.pre_build else f"{make}\n"
    modules = [
        "--tmpfs",
        "/usr/lib/modules",
        "--symlink",
        str(kernel.kbuild_dir),
        f"/usr/lib/modules/{kernel.release}/build",
    ]
    argv, environment = command_for(kernel, ["bash", "-c", script], writable=[tree])
    if environment != HOST:
        # The environment's /usr is bound read-only: the mount point must exist in it already.
        env = EnvironmentStore().for_kernel(kernel)
        if env is not None:
            (env.root / "usr" / "lib" / "modules").mkdir(parents=True, exist_ok=True)
    if environment == HOST:
        argv = [
            bwrap(),
            "--dev-bind",
            "/",
            "/",
            *modules,
            "--chdir",
            str(build_dir),
            "--",
            "bash",
            "-c",
            script,
        ]
    else:
        split = argv.index("--")
        argv = [*argv[:split], *modules, "--chdir", str(build_dir), *argv[split:]]
    return argv, environment


def build_sources(sources: list[Path], kernel: KernelTarget, *, werror: bool = False) -> list[BuildResult]:
    """One BuildResult per source, in order: DKMS trees built with their own MAKE[0], each as one
    result holding every module it declares (a run picks its module by name), the rest batched
    through kbuild. A package BUILD_EXCLUSIVE rules out has no modules and says why in its log."""
    plain = [source for source in sources if not is_dkms_tree(source)]
    built = dict(zip(plain, build_modules(plain, kernel, werror=werror), strict=True)) if plain else {}
    for source in sources:
        if source in built:
            continue
        package = build_dkms(source, kernel, werror=werror)
        combined = BuildResult(
            source_dir=Path(source).resolve(),
            kernel=kernel,
            build_dir=package.build_dir,
            log=f"{SKIPPED}{package.skipped}" if package.skipped else package.log,
            werror=werror,
            environment=next((r.environment for r in package.results.values()), ""),
        )
        for result in package.results.values():
            combined.modules += result.modules
            combined.diagnostics += [d for d in result.diagnostics if d not in combined.diagnostics]
        if not package.ok:
            combined.modules = []  # a package is built whole or not at all, as with dkms
        built[source] = combined
    return [built[source] for source in sources]


def skipped_build(run: ModuleRun, results: list[BuildResult]) -> bool:
    """Whether RESULTS say the run does not apply to its kernel (a DKMS package excludes it);
    then RUN carries the reason, so its verdict is ``skipped``, not a failure."""
    reasons = [r.log[len(SKIPPED) :] for r in results if not r.modules and r.log.startswith(SKIPPED)]
    if reasons:
        run.skipped = reasons[0]
    return bool(reasons)
