"""kmh as a user installs it: a wheel in a fresh virtualenv, used from a project of their own.

Nothing here runs from the repository: the wheel is built from it, installed into a venv in a
temp dir, and every command runs with that venv's ``kmh``/``pytest`` in a directory outside the
clone, so a data file found through the repository root (instead of the package) fails here.
The kernel targets come from the shared store (``KMH_CACHE``), as for the rest of the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "example-project"
#: What the wheel is not built from: environments, caches, build output, tests and benchmarks.
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".vagrant", "tests", "bench"
)


class Venv:
    """A fresh virtualenv with the wheel installed, and a way to run its programs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")
        }
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *command: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        program = self.bin / command[0]
        return subprocess.run(
            [str(program), *command[1:]],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """Build the wheel and install it (with its dependencies, from the package index or pip's
    cache) into a new venv: no system site-packages, so a missing dependency shows."""
    tmp = tmp_path_factory.mktemp("wheel")
    assert REPO not in tmp.parents
    # Built from a copy: pip builds in the source tree, and a stale build/ there could put files
    # in the wheel that the source no longer ships.
    source = Path(shutil.copytree(REPO, tmp / "source", ignore=SKIP))
    dist = tmp / "dist"
    _check(
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    )
    (wheel,) = dist.glob("kmod_harness-*.whl")
    venv = Venv(tmp / "venv")
    _check(subprocess.run([sys.executable, "-m", "venv", str(venv.root)], capture_output=True, text=True))
    _check(venv.run("python", "-m", "pip", "install", "-q", str(wheel), cwd=tmp, timeout=900))
    return venv


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The example module project of docs/ (module source, Kbuild, a test file), copied out."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "myproject"))


@pytest.mark.vm
def test_installed_package_is_the_wheel(installed: Venv, project: Path):
    located = installed.run(
        "python",
        "-c",
        "import harness, harness.resources as r; "
        "print(harness.__file__); print(r.template_dir()); print(r.guest_dir())",
        cwd=project,
    )
    package, templates, guest = _check(located).stdout.split()
    for path in (package, templates, guest):
        assert Path(path).is_relative_to(installed.root), path
    assert (Path(guest) / "agent" / "kmh-agent.c").is_file()


@pytest.mark.vm
def test_pytest_in_a_module_project_of_its_own(installed: Venv, project: Path, kernel_61):
    """The plugin from the wheel builds the project's module, loads and unloads it in a VM."""
    result = installed.run("pytest", "-v", "-p", "no:cacheprovider", "--kmh-kernel", "bookworm", cwd=project)
    _check(result)
    assert "test_mymodule.py::test_mymodule_loads_and_unloads PASSED" in result.stdout
    assert "1 passed" in result.stdout


@pytest.mark.vm
def test_kmh_new_build_run_from_the_venv(installed: Venv, tmp_path: Path, kernel_61):
    """The CLI's templates, kbuild and guest image all come from the installed package."""
    booted = _check(
        installed.run("kmh", "vm", "run", "--kernel", "bookworm", "--", "uname", "-r", cwd=tmp_path)
    )
    assert booted.stdout.strip() == kernel_61.release
    _check(installed.run("kmh", "new", "hello", "wheelhello", "-o", "wheelhello", cwd=tmp_path))
    assert (tmp_path / "wheelhello" / "wheelhello.c").is_file()
    built = _check(installed.run("kmh", "build", "wheelhello", "--kernel", "bookworm", cwd=tmp_path))
    (ko,) = [Path(line) for line in built.stdout.splitlines() if line.endswith("wheelhello.ko")]
    assert ko.is_file()
    modinfo = _check(installed.run("kmh", "modinfo", str(ko), cwd=tmp_path))
    assert "name:           wheelhello" in modinfo.stdout
    run = installed.run(
        "kmh", "run", "wheelhello", "--kernel", "bookworm", "--junit", "report.xml", cwd=tmp_path
    )
    _check(run)
    assert "1 passed" in run.stdout
    assert (tmp_path / "report.xml").is_file()
