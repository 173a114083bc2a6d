"""Cutting a real plan (shipped specs × both kernels) into cells: nothing lost, one kernel per cell."""

from __future__ import annotations

import pickle

import pytest

from harness.cluster.cells import MAX_CELL_SIZE, cell_size, split_plan
from harness.lifecycle.runner import make_plan
from harness.lifecycle.spec import load_spec
from harness.paths import REPO_ROOT

SPECS = sorted((REPO_ROOT / "modules").rglob("*.toml"))


@pytest.fixture(scope="module")
def plan(kernel_61, kernel_612):  # type: ignore[no-untyped-def]
    return make_plan([load_spec(path) for path in SPECS], ["bookworm", "bookworm-backports"])


@pytest.mark.parametrize("size", [1, 3, 5, 100])
def test_every_run_in_exactly_one_cell_of_its_kernel(plan, size):
    cells = split_plan(plan, size=size, run_id="t")
    indices = [item.index for cell in cells for item in cell.items]
    assert sorted(indices) == list(range(len(plan.items)))
    for cell in cells:
        assert 1 <= len(cell.items) <= size
        assert {plan.items[item.index].kernel.release for item in cell.items} == {cell.kernel}
        assert all(item.kernel == cell.kernel for item in cell.items)
    assert len({cell.key for cell in cells}) == len(cells)


def test_cells_of_a_kernel_are_balanced(plan):
    per_kernel = len(plan.items) // 2
    cells = split_plan(plan, size=per_kernel - 1, run_id="t")
    lengths = sorted(len(cell.items) for cell in cells)
    # n runs with size n-1 → two cells per kernel of n/2 each, not n-1 and 1.
    assert lengths[-1] - lengths[0] <= 1 and len(cells) == 4


def test_cells_pickle_and_keep_the_specs(plan):
    cells = split_plan(plan, run_id="t")
    again = pickle.loads(pickle.dumps(cells))
    assert again == cells
    assert {item.spec.origin for cell in again for item in cell.items} == {str(path) for path in SPECS}


def test_cell_size_must_be_positive(plan):
    with pytest.raises(ValueError):
        split_plan(plan, size=0)


@pytest.mark.parametrize(
    ("runs", "slots", "size"),
    [(40, 2, MAX_CELL_SIZE), (40, 8, 5), (4, 2, 2), (3, 16, 1), (1000, 4, MAX_CELL_SIZE), (5, 0, 5)],
)
def test_cells_are_as_big_as_possible_while_every_vm_has_one(runs, slots, size):
    assert cell_size(runs, slots) == size
