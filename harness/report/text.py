"""Make captured text safe to show: console logs carry bytes no report format may hold.

Guest consoles and dmesg excerpts contain carriage returns, ANSI colour sequences, NULs, stray
escape bytes and (after ``surrogateescape`` decoding) lone surrogates. A terminal would act on
them, XML 1.0 forbids most of them outright, a KTAP line must stay one line, and UTF-8 cannot
encode a lone surrogate. Every writer therefore passes evidence through :func:`printable`, which
keeps the text readable and turns each such character into a visible ``\\xNN`` escape rather
than dropping it, so nothing the kernel said is silently lost.

:func:`crash_text` is the one plain-text rendering of a crash that the file formats share.
"""

from __future__ import annotations

import re

from harness.vm.crash import Crash

#: ANSI CSI sequences (colours, cursor moves): they carry no content, only presentation.
_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
#: C0 controls, DEL, C1 controls, lone surrogates and the two non-characters XML 1.0 rejects.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        # A byte that was not valid UTF-8, smuggled through by surrogateescape: show the byte.
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str, *, keep: str = "\n\t") -> str:
    """``text`` with CRLF/CR line ends normalised, ANSI sequences removed and every other
    control character (except those in ``keep``) replaced by a visible escape."""
    text = _CSI.sub("", text.replace("\r\n", "\n"))
    return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)


def one_line(text: str, *, limit: int = 0) -> str:
    """``text`` squeezed onto a single line (for messages, attributes and KTAP descriptions),
    cut to ``limit`` characters with an ellipsis when ``limit`` is set."""
    flat = " ".join(printable(text, keep="\n").split())
    if limit and len(flat) > limit:
        return flat[: max(limit - 1, 0)] + "…"
    return flat


def crash_text(crash: Crash) -> str:
    """A crash as readable text: summary, taint, command and the full call trace. The raw
    console lines are left to the caller, which may have a better place for them."""
    lines = [crash.summary()]
    if crash.taint:
        lines.append(f"Tainted: {crash.taint}")
    if crash.command:
        lines.append(f"Command: {crash.command}")
    if crash.panicked:
        lines.append("The kernel panicked.")
    if crash.call_trace:
        lines.append("Call Trace:")
        lines += [f"  {frame}" for frame in crash.call_trace]
    return "\n".join(lines)
