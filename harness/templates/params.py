"""Template parameter kinds: what a value may be, how text becomes that value, and why it was refused.

Each kind is a small class with one ``convert`` method. Values come from the command line as text
(``-p count=3``) or from Python/TOML specs as native values (``{"count": 3}``); both go through the
same ``convert`` so a spec and a command line can never disagree. ``convert`` raises ValueError with
a reason; :meth:`Param.parse` turns that into a :class:`HarnessError` that names the parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.templates.cvalues import (
    INT_MAX,
    INT_MIN,
    MODULE_NAME_MAX,
    Ident,
    UserText,
    ident_problem,
)

#: Default of an ident parameter that follows the module's own name.
MODULE_NAME = "<module name>"


@dataclass(frozen=True)
class Param:
    """One declared template parameter. Subclasses define the kind."""

    name: str
    help: str
    default: object

    kind = "value"

    def convert(self, value: object) -> object:
        raise NotImplementedError

    def describe(self) -> str:
        """The kind and its limits, for ``kmh templates`` and error messages."""
        return self.kind

    def show_default(self) -> str:
        return str(self.default)

    def parse(self, value: object, template: str) -> object:
        """Convert ``value`` or raise a HarnessError naming the template, parameter and reason."""
        try:
            return self.convert(value)
        except (ValueError, TypeError) as error:
            raise HarnessError(
                f"template {template!r}: parameter {self.name!r} ({self.describe()}) "
                f"cannot be {_show(value)}: {error}"
            ) from None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class IdentParam(Param):
    """A C identifier (module, symbol, device or /proc entry name)."""

    max_len: int = MODULE_NAME_MAX
    kind = "ident"

    def convert(self, value: object) -> Ident:
        text = _text(value)
        problem = ident_problem(text, self.max_len)
        if problem:
            raise ValueError(problem)
        return Ident(text)

    def describe(self) -> str:
        return f"C identifier, at most {self.max_len} chars"


@dataclass(frozen=True)
class StringParam(Param):
    """Free text, escaped into a C string literal when rendered."""

    max_len: int = 200
    kind = "string"

    def convert(self, value: object) -> UserText:
        text = _text(value)
        if "\0" in text:
            raise ValueError("it contains a NUL character, which would cut the C string short")
        if len(text.encode("utf-8")) > self.max_len:
            raise ValueError(f"it is longer than {self.max_len} bytes")
        return UserText(text)

    def describe(self) -> str:
        return f"string, at most {self.max_len} bytes"

    def show_default(self) -> str:
        return repr(self.default)


@dataclass(frozen=True)
class IntParam(Param):
    """A C ``int`` within [minimum, maximum]; text accepts decimal, 0x hex and 0o/0 octal."""

    minimum: int = INT_MIN
    maximum: int = INT_MAX
    kind = "int"

    def convert(self, value: object) -> int:
        if isinstance(value, bool):
            raise TypeError("expected an integer, got a boolean")
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            try:
                if (
                    len(text.lstrip("+-")) > 1
                    and text.lstrip("+-")[0] == "0"
                    and text.lstrip("+-")[1].isdigit()
                ):
                    number = int(text, 8)  # C-style octal, e.g. a mode 0644
                else:
                    number = int(text, 0)
            except ValueError:
                raise ValueError("expected an integer such as 42, -1 or 0x10") from None
        elif isinstance(value, int):
            number = value
        else:
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        if not self.minimum <= number <= self.maximum:
            raise ValueError(f"it must be between {self.minimum} and {self.maximum}")
        return number

    def describe(self) -> str:
        if (self.minimum, self.maximum) == (INT_MIN, INT_MAX):
            return "int"
        return f"int {self.minimum}..{self.maximum}"


_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


@dataclass(frozen=True)
class BoolParam(Param):
    kind = "bool"

    def convert(self, value: object) -> bool:
        if isinstance(value, bool):
            return value
        text = _text(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("expected true or false (also yes/no, on/off, 1/0)")

    def describe(self) -> str:
        return "bool"

    def show_default(self) -> str:
        return "true" if self.default else "false"


@dataclass(frozen=True)
class ChoiceParam(Param):
    """One of a fixed list; the template maps each choice to C it wrote itself."""

    choices: tuple[str, ...] = field(default=())
    kind = "choice"

    def convert(self, value: object) -> str:
        text = _text(value).strip()
        if text not in self.choices:
            raise ValueError("expected one of " + ", ".join(self.choices))
        # Identifier-shaped choices (errno names) may be printed into C; the rest only compared
        # or escaped, like any string.
        return Ident(text) if ident_problem(text) is None else UserText(text)

    def describe(self) -> str:
        return "one of " + "|".join(self.choices)


@dataclass(frozen=True)
class IntListParam(Param):
    """A list of C ints, written ``1,2,3`` on the command line (empty text: empty list)."""

    max_items: int = 16
    minimum: int = INT_MIN
    maximum: int = INT_MAX
    kind = "int list"

    def convert(self, value: object) -> tuple[int, ...]:
        if isinstance(value, str):
            items: list[object] = [part.strip() for part in value.split(",")] if value.strip() else []
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise TypeError(f"expected a comma-separated list of integers, got {type(value).__name__}")
        if len(items) > self.max_items:
            raise ValueError(f"it has {len(items)} items; at most {self.max_items} are allowed")
        element = IntParam(self.name, self.help, 0, minimum=self.minimum, maximum=self.maximum)
        numbers = []
        for index, item in enumerate(items):
            try:
                numbers.append(element.convert(item))
            except (TypeError, ValueError) as error:
                raise ValueError(f"item {index + 1} ({item!r}): {error}") from None
        return tuple(numbers)

    def describe(self) -> str:
        return f"list of up to {self.max_items} ints"

    def show_default(self) -> str:
        return ",".join(str(v) for v in self.default)  # type: ignore[attr-defined]


_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


@dataclass(frozen=True)
class MacParam(Param):
    """An Ethernet unicast address ``02:00:00:00:00:01``; becomes 6 ints, printed with ``c_int_list``.

    Multicast addresses (low bit of the first byte set) and all-zero are refused because the
    kernel's ``eth_validate_addr`` would refuse them when the interface is brought up.
    """

    kind = "mac"

    def convert(self, value: object) -> tuple[int, ...]:
        text = _text(value).strip()
        if not _MAC.fullmatch(text):
            raise ValueError("expected six two-digit hex bytes separated by ':', e.g. 02:00:00:00:00:01")
        octets = tuple(int(part, 16) for part in text.split(":"))
        if octets[0] & 1:
            raise ValueError("it is a multicast address (low bit of the first byte set)")
        if not any(octets):
            raise ValueError("the all-zero address is not a valid interface address")
        return octets

    def describe(self) -> str:
        return "unicast MAC address xx:xx:xx:xx:xx:xx"

    def show_default(self) -> str:
        return str(self.default)
