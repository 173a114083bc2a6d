"""A module source directory travels with its cell: the worker needs no copy of the user's tree."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from harness.cluster.cells import split_plan
from harness.cluster.execute import CellOptions, run_cell
from harness.cluster.sources import pack_sources, unpack_sources
from harness.lifecycle.runner import make_plan
from harness.lifecycle.spec import spec_for_directory, spec_for_template
from harness.templates import write_module


@pytest.fixture
def shipped_cell(tmp_path, kernel_61):  # type: ignore[no-untyped-def]
    """A cell for a module directory, packed, whose original directory is then deleted."""
    source = write_module("hello", "shipped_kmh", tmp_path / "mine").directory
    (source / "stale.o").write_bytes(b"an old build product")
    plan = make_plan([spec_for_directory(source)], ["bookworm"])
    [cell] = split_plan(plan, run_id="t")
    packed = pack_sources(cell)
    shutil.rmtree(source)
    return packed


def test_unpacked_sources_are_the_directory_without_build_products(shipped_cell, tmp_path):
    cell = unpack_sources(shipped_cell, tmp_path / "worker")
    source = cell.items[0].spec.module.source
    assert source is not None and source.is_relative_to(tmp_path / "worker")
    assert (source / "shipped_kmh.c").is_file() and (source / "Kbuild").is_file()
    assert not (source / "stale.o").exists()
    assert cell.sources == ()


@pytest.mark.vm
def test_a_cell_runs_a_directory_module_that_only_its_client_had(shipped_cell):
    [run] = run_cell(shipped_cell, CellOptions())
    report = "\n".join(f"{s.name}: {s.status}: {s.message}" for s in run.steps)
    assert run.verdict == "pass", report
    assert run.module == "shipped_kmh"


def test_a_kernel_the_worker_cannot_have_is_an_error_verdict_not_a_lost_run(kernel_61):
    plan = make_plan([spec_for_template("hello")], ["bookworm"])
    [cell] = split_plan(plan, run_id="t")
    elsewhere = dataclasses.replace(
        cell,
        items=tuple(
            dataclasses.replace(item, kernel="no such kernel", build_kernel="no such kernel")
            for item in cell.items
        ),
    )
    [run] = run_cell(elsewhere, CellOptions())
    assert run.verdict == "error"
    assert run.failure is not None and run.failure.name == "setup"
    assert "on this worker" in run.failure.message and "no such kernel" in run.failure.message
