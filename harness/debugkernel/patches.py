"""Source fixes applied to a debug kernel's tree before it is configured and built.

Each fix is an exact text replacement in one file of one kernel version (``major.minor``); a
tree where the anchor text is missing is an error, not a silent skip: the fix was measured
against that exact source, and a build without it would claim more than it checked.

Why 6.12 needs one: kmemleak scans every in-use ``struct page`` for pointers. When SLUB frees a
slab, ``slab->freelist`` (the same word as ``page->index``) keeps the address of the object at the
head of its free list, and 6.12's page allocator no longer overwrites ``page->index`` on free
(6.1's stored the migratetype there: ``set_pcppage_migratetype``). The page later becomes a tail
page of another slab, whose object at that very address is then "referenced" by the stale word.
Measured on 6.12.118 (TCG guests, insmod/rmmod/scan rounds): the leaked kmalloc of
modules/debug/kmalloc_leak went unreported in 5 of 22 rounds, kmemleak counting one reference each
time; in 4 of the 5 a search of all guest memory found the address in word 4 of the ``struct
page`` of the object's own page (a tail page of its slab). With the word cleared, 1 of 12 raw
rounds still missed it through a stale copy inside an unrelated allocation, which the guests'
``init_on_alloc=1`` removes (see :meth:`harness.debugkernel.features.Features.kernel_params`):
then 12 of 12 raw rounds and 10 of 10 kmh runs found it, and 6.1 (no fix needed) 10 of 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError


@dataclass(frozen=True)
class SourceFix:
    """Replace ANCHOR (exactly once) with REPLACEMENT in PATH of the kernel tree."""

    path: str
    anchor: str
    replacement: str
    why: str


_SLAB_FREELIST = SourceFix(
    "mm/slub.c",
    "\t__slab_clear_pfmemalloc(slab);\n\tfolio->mapping = NULL;\n",
    "\t__slab_clear_pfmemalloc(slab);\n"
    "\t/* kmh: a stale freelist in page->index hides leaks from kmemleak's struct page scan. */\n"
    "\tslab->freelist = NULL;\n"
    "\tfolio->mapping = NULL;\n",
    "a freed slab's freelist left in page->index keeps a later object 'referenced' for kmemleak",
)

#: The fixes per kernel version (``major.minor``).
FIXES: dict[str, tuple[SourceFix, ...]] = {"6.12": (_SLAB_FREELIST,)}


def apply_fixes(tree: Path, major_minor: str) -> list[SourceFix]:
    """Apply the fixes of MAJOR_MINOR to the source TREE; the fixes applied."""
    fixes = FIXES.get(major_minor, ())
    for fix in fixes:
        target = tree / fix.path
        text = target.read_text() if target.is_file() else ""
        if text.count(fix.anchor) != 1:
            raise HarnessError(
                f"the {major_minor} debug kernel fix for {fix.path} does not apply to this source ({fix.why})"
            )
        target.write_text(text.replace(fix.anchor, fix.replacement))
    return list(fixes)
