"""The HTML report: one self-contained file, the module × kernel grid, each cell its evidence.

Rendered from the realistic runs of conftest.py, then loaded in a real headless Chromium: its
DOM must hold the grid, and its screenshot must show the verdict colours of the cells.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.lifecycle.result import ModuleRun, StepResult
from harness.report import render_html, write_html


class _Collector(HTMLParser):
    """Tags with their attributes, to check structure without regular expressions over HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append((tag, dict(attrs)))


def _tags(document: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Collector()
    parser.feed(document)
    return parser.tags


def test_grid_has_a_column_per_kernel_and_a_cell_per_run(runs):
    document = render_html(runs)
    tags = _tags(document)
    kernels = [attrs for tag, attrs in tags if tag == "th" and attrs.get("class") == "kernel"]
    assert len(kernels) == 2
    cells = [attrs for tag, attrs in tags if tag == "td" and "cell" in (attrs.get("class") or "")]
    assert len(cells) == 6 * 2  # 6 modules x 2 kernels, the pairs not run marked as such
    verdicts = sorted(attrs["data-verdict"] or "" for attrs in cells if "data-verdict" in attrs)
    assert verdicts == sorted(run.verdict for run in runs)
    assert document.count('class="cell none"') == 6
    assert document.count("<details>") == 6


def test_each_cell_holds_its_steps_and_evidence(by_module, runs):
    document = render_html(runs)
    assert "undeclared_thing" in document  # gcc's diagnostics of the build failure
    assert "null_deref_init+0x11/0x1000 [null_deref]" in document  # the crash's call trace
    assert document.count('<table class="steps">') == len(runs)


def test_self_contained_and_nothing_kernel_printed_becomes_markup(runs):
    hostile = StepResult("load", "fail", 0.1, "<script>alert(1)</script>", '<img src="http://x/y.png">')
    runs = [*runs, ModuleRun("evil", "modules/evil.toml", "6.1.0-26-amd64", steps=[hostile])]
    document = render_html(runs)
    tags = _tags(document)
    assert not [tag for tag, _ in tags if tag in ("script", "img", "link", "iframe", "object")]
    assert not [attrs for _tag, attrs in tags if "src" in attrs or "href" in attrs]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert "\x1b" not in document and "\x00" not in document


def _png_pixels(path: Path) -> tuple[int, int, set[tuple[int, int, int]]]:
    """Width, height and the set of RGB colours of an 8-bit RGB(A) non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, colour_type, _c, _f, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    colours = set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + predictor) & 0xFF
        colours.update(tuple(line[i : i + 3]) for i in range(0, stride, channels))
        previous = line
    return width, height, colours


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "Debian's chromium is installed by harness/setup.py"
    return found


def _chromium(chromium: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_chromium_loads_the_report_and_shows_the_grid(tmp_path, runs, chromium):
    report = write_html(runs, tmp_path / "report.html")
    dom = _chromium(chromium, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr
    assert 'id="grid"' in dom.stdout
    assert re.search(r"1 passed, 3 failed, 1 crashed, 1 timed out", dom.stdout)
    for kernel in ("6.1.0-26-amd64", "6.12.9+bpo-amd64"):
        assert f'<th class="kernel">{kernel}</th>' in dom.stdout

    screenshot = tmp_path / "report.png"
    shot = _chromium(chromium, f"--screenshot={screenshot}", "--window-size=1200,700", report.as_uri())
    assert screenshot.is_file(), shot.stderr
    width, height, colours = _png_pixels(screenshot)
    assert (width, height) == (1200, 700)
    assert len(colours) > 20  # text and cells, not a blank page
    # The grid's cells in their verdict colours (see STYLE in harness/report/html.py).
    for colour in ((0xD7, 0xF5, 0xD9), (0xFF, 0xD6, 0xD6), (0xFF, 0x9F, 0x9F), (0xFF, 0xEE, 0xB0)):
        assert colour in colours, f"no cell of colour #{bytes(colour).hex()} in the screenshot"
