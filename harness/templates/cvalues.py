"""Values that may appear in generated C, and the only ways user input gets there.

Templates never paste a user's text into C. Every parameter value reaches a template as one of a
few typed values, and the Jinja environment's ``finalize`` hook (:func:`emit`) refuses to print
anything else. A string parameter arrives as :class:`UserText`, which can only be printed through
the ``c_string`` filter; that filter produces a complete, escaped C string literal. So the safety
of the generated C does not depend on every template author remembering to escape: forgetting is
a render error, not an injection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import jinja2

#: On x86_64 MODULE_NAME_LEN is 64 - sizeof(unsigned long) = 56 bytes including the NUL.
MODULE_NAME_MAX = 64 - 8 - 1

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

#: C11/C23 keywords, GNU spellings, and identifiers the kernel headers define as macros or types
#: that a template might otherwise emit as a declaration name.
C_KEYWORDS = frozenset(
    """
    auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic
    _Imaginary _Noreturn _Static_assert _Thread_local alignas alignof bool constexpr false
    nullptr static_assert thread_local true typeof typeof_unqual asm __asm__ __attribute__
    __typeof__ __inline__ __volatile__ __restrict__ __extension__ __label__ __builtin_va_list
    NULL current
    """.split()
)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Ident(str):
    """A checked C identifier: safe to print as-is, in C and in Kbuild files."""


class CCode(str):
    """C text produced by one of this module's filters (a literal), safe to print."""


class UserText(str):
    """A string parameter's value. Printing it raw is refused; use ``|c_string``."""


def ident_problem(value: str, max_len: int = MODULE_NAME_MAX) -> str | None:
    """Why ``value`` is not a usable C identifier, or None when it is."""
    if not value:
        return "it is empty"
    if not _IDENT.match(value):
        bad = next((ch for ch in value if not (ch.isascii() and (ch.isalnum() or ch == "_"))), None)
        if value[0].isdigit():
            return "a C identifier cannot start with a digit"
        return f"a C identifier may only hold letters, digits and '_' (found {bad!r})"
    if value in C_KEYWORDS:
        return f"{value!r} is a C keyword or a name the kernel headers reserve"
    if value.startswith("__") or (value[0] == "_" and value[1:2].isupper()):
        return "names starting with '__' or '_' and a capital letter are reserved for the compiler"
    if len(value) > max_len:
        return f"it is {len(value)} characters long; the limit is {max_len}"
    return None


def _escape_byte(byte: int) -> str:
    if byte == 0x5C:
        return "\\\\"
    if byte == 0x22:
        return '\\"'
    if byte == 0x3F:  # '?': no trigraph can form
        return "\\?"
    if byte == 0x0A:
        return "\\n"
    if byte == 0x09:
        return "\\t"
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    # Three octal digits always: unlike \x, an octal escape stops by itself.
    return f"\\{byte:03o}"


def c_string(value: str) -> CCode:
    """A complete C string literal for ``value`` (UTF-8), with every special byte escaped."""
    if "\0" in value:
        raise ValueError("a C string cannot hold a NUL character")
    return CCode('"' + "".join(_escape_byte(b) for b in value.encode("utf-8")) + '"')


def c_int(value: int) -> CCode:
    """A C ``int`` literal; INT_MIN is spelled so that no constant overflows."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"c_int expects an int, got {type(value).__name__}")
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"{value} does not fit a C int")
    return CCode("(-2147483647 - 1)" if value == INT_MIN else str(value))


def c_bool(value: bool) -> CCode:
    if not isinstance(value, bool):
        raise TypeError(f"c_bool expects a bool, got {type(value).__name__}")
    return CCode("true" if value else "false")


def c_int_list(values: Iterable[int]) -> CCode:
    """The inside of a C array initialiser: ``1, 2, 3``."""
    return CCode(", ".join(c_int(v) for v in values))


def c_octal(value: int) -> CCode:
    """A file mode as C octal (``0644``)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError(f"{value!r} is not a file mode")
    return CCode(f"0{value:03o}")


def c_mode(value: str) -> CCode:
    """A file mode given as octal text (``"0644"``), re-spelt as a C octal literal."""
    if not re.fullmatch(r"0[0-7]{3}", value):
        raise ValueError(f"{value!r} is not an octal file mode like 0644")
    return c_octal(int(value, 8))


def emit(value: object) -> object:
    """Jinja ``finalize`` hook: let only checked values into the output.

    A template bug (printing a raw string parameter, a Python bool, None) raises here, so it is
    caught by the first render in the tests rather than producing C that merely looks right.
    """
    if isinstance(value, jinja2.Undefined):
        return value  # StrictUndefined raises its own, clearer error when printed
    if isinstance(value, UserText):
        raise TypeError("a string parameter was printed raw; render it with |c_string")
    if isinstance(value, Ident | CCode):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return c_int(value)
    raise TypeError(f"refusing to print {type(value).__name__} {value!r} into C; use a c_* filter")


FILTERS = {
    "c_string": c_string,
    "c_int": c_int,
    "c_bool": c_bool,
    "c_int_list": c_int_list,
    "c_octal": c_octal,
    "c_mode": c_mode,
}
