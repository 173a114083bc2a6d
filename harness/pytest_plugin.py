"""pytest plugin (entry point ``pytest11``): fixtures over the harness library.

Thin on purpose: every fixture calls the same library the CLI uses, and the library never
imports pytest. A driver developer writes::

    @pytest.mark.kmh_module("../mydriver")            # a module directory, relative to the test file
    def test_mydriver(kmh_vm, kmh_module, kmh_dmesg):
        kmh_vm.put(kmh_module.path, "/tmp/mydriver.ko")
        assert kmh_vm.run("/sbin/insmod /tmp/mydriver.ko").ok
        assert any("mydriver: ready" in line for line in kmh_dmesg())

or ``@pytest.mark.kmh_module(template="chardev", name="mychr", params={...})`` for a generated
one. ``--kmh-kernel`` chooses the kernel target (default bookworm).

Network drivers are checked over rtnetlink inside the guest (pyroute2, the same check as a spec's
``[[expect.links]]``) with ``kmh_net_vm`` (a VM with the Python layer) and ``kmh_netcheck``::

    def test_mynet(kmh_net_vm, kmh_module, kmh_netcheck):
        kmh_net_vm.put(kmh_module.path, "/tmp/mynet.ko")
        assert kmh_net_vm.run("/sbin/insmod /tmp/mynet.ko").ok
        report = kmh_netcheck([{"name": "mynet0", "mtu": 1500, "up": True, "tx_count": 5}])
        assert report.ok, report.describe()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.kbuild import BuiltModule, build_modules
from harness.kernels.store import KernelStore
from harness.kernels.target import KernelTarget


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kmh", "kmod-harness")
    group.addoption("--kmh-kernel", default=None, help="kernel target for kmh fixtures (default: bookworm)")
    parser.addini("kmh_kernel", "kernel target for kmh fixtures", default="bookworm")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kmh_module(directory=None, *, template=None, name=None, params=None): the module kmh_module builds",
    )


@pytest.fixture(scope="session")
def kmh_kernel(pytestconfig: pytest.Config) -> KernelTarget:
    """The kernel target (added to the store on first use)."""
    name = pytestconfig.getoption("--kmh-kernel") or pytestconfig.getini("kmh_kernel")
    try:
        return KernelStore().ensure(name)
    except HarnessError as error:
        pytest.fail(f"kmh: {error.message}", pytrace=False)


def _booted(kernel: KernelTarget, **options: Any) -> Iterator[object]:
    from harness.vm.qemu import VM

    with VM(kernel, **options) as vm:
        yield vm


@pytest.fixture(scope="module")
def _kmh_shared_vm(kmh_kernel: KernelTarget) -> Iterator[object]:
    yield from _booted(kmh_kernel)


@pytest.fixture
def kmh_vm(_kmh_shared_vm):  # type: ignore[no-untyped-def]
    """A booted disposable VM shared by the tests of one module (file); a test that oopsed it
    leaves a fresh one to the next test."""
    if _kmh_shared_vm.poisoned:
        _kmh_shared_vm.restart()
    return _kmh_shared_vm


@pytest.fixture
def kmh_fresh_vm(kmh_kernel: KernelTarget) -> Iterator[object]:
    """A VM of its own for one test (for tests that expect to crash the kernel)."""
    yield from _booted(kmh_kernel)


@pytest.fixture
def kmh_build(
    kmh_kernel: KernelTarget, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., BuiltModule]:
    """Build a module directory (or a template) for the kernel target; fails the test on errors."""

    def build(
        directory: str | Path | None = None,
        *,
        template: str | None = None,
        name: str | None = None,
        params: dict | None = None,
    ) -> BuiltModule:
        if template:
            from harness.templates import write_module

            out = tmp_path_factory.mktemp("kmh-src") / (name or template)
            directory = write_module(template, name or f"kmh_{template}", out, params or {}).directory
        if directory is None:
            raise pytest.UsageError("kmh_build needs a directory or template=")
        (result,) = build_modules([Path(directory)], kmh_kernel)
        if not result.ok:
            diagnostics = "\n".join(str(d) for d in result.diagnostics) or result.log[-3000:]
            pytest.fail(
                f"kmh: {directory} does not build for {kmh_kernel.release}:\n{diagnostics}", pytrace=False
            )
        return result.modules[0]

    return build


@pytest.fixture
def kmh_module(request: pytest.FixtureRequest, kmh_build: Callable[..., BuiltModule]) -> BuiltModule:
    """The module named by the test's ``kmh_module`` marker, built for the kernel target."""
    marker = request.node.get_closest_marker("kmh_module")
    if marker is None:
        raise pytest.UsageError("kmh_module needs @pytest.mark.kmh_module(DIRECTORY) or (template=...)")
    directory = marker.args[0] if marker.args else marker.kwargs.get("directory")
    if directory is not None and not Path(directory).is_absolute():
        directory = Path(request.node.path).parent / directory
    return kmh_build(
        directory,
        template=marker.kwargs.get("template"),
        name=marker.kwargs.get("name"),
        params=marker.kwargs.get("params"),
    )


@pytest.fixture
def kmh_dmesg(kmh_vm) -> Callable[[], list[str]]:  # type: ignore[no-untyped-def]
    """A function returning the kernel log lines logged since the test started."""
    mark = kmh_vm.mark()
    return lambda: kmh_vm.dmesg(since=mark)


@pytest.fixture(scope="module")
def kmh_net_vm(kmh_kernel: KernelTarget) -> Iterator[object]:
    """Like ``kmh_vm``, with Debian's python3 + pyroute2 in the guest for ``kmh_netcheck``."""
    yield from _booted(kmh_kernel, python=True)


@pytest.fixture
def kmh_netcheck(kmh_net_vm) -> Callable[..., object]:  # type: ignore[no-untyped-def]
    """``check(links, phase="loaded")``: links (dicts with the spec's keys, or LinkExpectation)
    checked over rtnetlink in ``kmh_net_vm``; returns a NetReport (``.ok``, ``.describe()``)."""
    from harness.netcheck import LinkExpectation, check_links, link_from_table

    def check(links: list, phase: str = "loaded") -> object:
        wanted = [
            link if isinstance(link, LinkExpectation) else link_from_table(link, "kmh_netcheck")
            for link in links
        ]
        try:
            return check_links(kmh_net_vm, wanted, phase)  # type: ignore[arg-type]
        except HarnessError as error:
            pytest.fail(f"kmh: {error.message}", pytrace=False)

    return check
