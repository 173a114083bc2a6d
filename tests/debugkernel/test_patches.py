"""The source fixes applied to a debug kernel's tree, on the real ``__free_slab`` of Debian's
linux-source 6.12.118 and 6.1.192 (copied from their tarballs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.debugkernel.patches import FIXES, apply_fixes
from harness.errors import HarnessError

DATA = Path(__file__).parent / "data"


def _tree(tmp_path: Path, version: str) -> Path:
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "slub.c").write_text((DATA / f"slub_free_slab_{version}.c").read_text())
    return tmp_path


def test_a_freed_6_12_slab_forgets_its_freelist_before_the_page_goes_back(tmp_path):
    tree = _tree(tmp_path, "6.12")
    applied = apply_fixes(tree, "6.12")
    assert [fix.path for fix in applied] == ["mm/slub.c"]
    lines = [line.strip() for line in (tree / "mm" / "slub.c").read_text().splitlines()]
    cleared = lines.index("slab->freelist = NULL;")
    # Before the pages are handed back (__free_pages), while the slab is still the caller's.
    assert cleared < lines.index("__free_pages(&folio->page, order);")
    assert lines.count("slab->freelist = NULL;") == 1


def test_6_1_has_no_fix_and_its_source_is_left_alone(tmp_path):
    tree = _tree(tmp_path, "6.1")
    before = (tree / "mm" / "slub.c").read_text()
    assert apply_fixes(tree, "6.1") == [] and "6.1" not in FIXES
    assert (tree / "mm" / "slub.c").read_text() == before


def test_a_source_the_fix_does_not_fit_is_an_error_not_a_silent_build(tmp_path):
    # 6.1's __free_slab under a 6.12 version: the anchor is not there.
    tree = _tree(tmp_path, "6.1")
    with pytest.raises(HarnessError, match=r"6\.12 debug kernel fix for mm/slub\.c does not apply"):
        apply_fixes(tree, "6.12")
    with pytest.raises(HarnessError):
        apply_fixes(tmp_path / "missing", "6.12")
