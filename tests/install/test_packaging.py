"""The wheel's declared contents match the source tree (fast checks, no build).

pyproject.toml lists the packages by hand (the data directories are not Python packages, so
setuptools' discovery cannot be used); these tests make a forgotten new package or data mapping
fail here instead of in a user's installation.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from harness import resources

REPO = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_harness_package_is_listed():
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "harness").rglob("__init__.py")
    }
    listed = {name for name in SETUPTOOLS["packages"] if not name.startswith("harness._data")}
    assert listed == on_disk


def test_data_mapping_matches_the_resources_module():
    mapped = {
        package.removeprefix("harness._data."): source
        for package, source in SETUPTOOLS["package-dir"].items()
    }
    expected = {
        name.split("/")[0]: ("." if "/" in name else source) for name, source in resources.DATA.items()
    }
    assert mapped == expected
    for name, source in resources.DATA.items():
        assert (REPO / source).exists(), source
        assert resources.data_path(name) == REPO / source


def test_data_subdirectories_are_listed():
    """setuptools ships only the directories named as packages: every vm/ subfolder must be one."""
    for package, source in SETUPTOOLS["package-dir"].items():
        if source == ".":
            continue
        for sub in (REPO / source).rglob("*"):
            if sub.is_dir():
                name = ".".join([package, *sub.relative_to(REPO / source).parts])
                assert name in SETUPTOOLS["packages"], name


def test_shell_completion_scripts_name_every_verb():
    from harness.commands.app import _VERBS

    for shell, marker in (("bash", "complete -F _kmh_completion kmh"), ("fish", "complete -c kmh")):
        result = subprocess.run(
            [sys.executable, "-m", "harness.cli", "--completions", shell], capture_output=True, text=True
        )
        assert result.returncode == 0 and marker in result.stdout
        for verb in _VERBS:
            assert verb in result.stdout, (shell, verb)


def test_readme_shows_the_tested_example():
    """The README's test file is the example project's, which test_wheel.py runs for real."""
    example = (REPO / "docs" / "example-project" / "tests" / "test_mymodule.py").read_text()
    assert f"```python\n{example}```" in (REPO / "README.md").read_text()
