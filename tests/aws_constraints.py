"""AWS's API constraints on every request the tests send (moto-backed, stubbed or anything else).

botocore validates only a request's types and required members; AWS also refuses a value that
breaks its service model's `pattern`, `min`/`max` (string length, number, list or map size) or
`enum`, with a ValidationException moto and Stubber never raise. `install()` wraps the one method
every botocore client calls with its final parameters (`BaseClient._convert_to_request_dict`,
after every `provide-client-params`/`before-parameter-build` handler), so each request of each
client, whenever and from whichever session it was created (the code under test's included), is
checked against the operation's input shape, recursively. A broken rule raises
`ApiConstraintError` (member path + rule) and is recorded, so a caller that swallows the error
still fails its test (conftest checks `VIOLATIONS` after each test).

Patterns are Java regular expressions (AWS validates with `String.matches`, a full match);
`java_regex` translates the constructs the service models use: `\\p{...}` classes, surrogate
pairs, ASCII `\\w\\d\\s`, Java's `.`, `\\z`, a quantified `$`, `-` after a class escape.
Lengths count UTF-16 code units, as Java's `String.length()` does.
"""
from __future__ import annotations

import os
import re
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

# (service, operation) pairs checked in this process; violations not yet claimed by a test
CHECKED: set[tuple[str, str]] = set()
VIOLATIONS: list[str] = []
REQUESTS = [0]
REPORT = "LTV_API_CONSTRAINTS_REPORT"  # a file: the checked operations at session end (JSON), refusals beside it


class ApiConstraintError(Exception):
    """A request AWS would refuse with ValidationException."""


# ------------------------------------------------------------------------------------------
# Java regular expressions -> Python's re


_POSIX = {"Alnum": "a-zA-Z0-9", "Alpha": "a-zA-Z", "Digit": "0-9", "ASCII": "\\x00-\\x7f",
          "Print": "\\x20-\\x7e", "Graph": "\\x21-\\x7e", "Lower": "a-z", "Upper": "A-Z", "Space": " \\t\\n\\x0b\\f\\r"}
_JAVA_DOT = "[^\\n\\r\\x85\\u2028\\u2029]"  # Java's `.` stops at every line terminator, not only \n


@lru_cache(maxsize=None)
def _categories() -> dict[str, list[tuple[int, int]]]:
    """The code point ranges of each two-letter Unicode general category (one pass over Unicode)."""
    out: dict[str, list[tuple[int, int]]] = {}
    start, current = 0, unicodedata.category("\x00")
    for cp in range(1, sys.maxunicode + 2):
        cat = unicodedata.category(chr(cp)) if cp <= sys.maxunicode else None
        if cat != current:
            out.setdefault(current, []).append((start, cp - 1))
            start, current = cp, cat
    return out


@lru_cache(maxsize=None)
def _category_ranges(name: str) -> str:
    """A character-class body of Unicode general category `name` (`L` = every L*, `Zs` = exactly
    Zs), or of a POSIX class, which Java defines over US-ASCII."""
    if name in _POSIX:
        return _POSIX[name]
    if not re.fullmatch(r"[LMNPSZC][a-z]?", name):
        raise NotImplementedError(f"\\p{{{name}}} is not a class this translator knows")
    esc = lambda cp: f"\\U{cp:08x}"  # noqa: E731
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}"
                   for cat, ranges in _categories().items() if cat.startswith(name) for a, b in ranges)


def _char(pattern: str, i: int) -> tuple[str, int]:
    """`\\uXXXX` at `i` (a surrogate pair `\\uD8xx\\uDCxx` is one code point) -> (escape, next index)."""
    cp = int(pattern[i + 2:i + 6], 16)
    j = i + 6
    if 0xD800 <= cp <= 0xDBFF and pattern.startswith("\\u", j):
        low = int(pattern[j + 2:j + 6], 16)
        if 0xDC00 <= low <= 0xDFFF:
            return f"\\U{0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00):08x}", j + 6
    return f"\\U{cp:08x}", j


@lru_cache(maxsize=None)
def java_regex(pattern: str) -> re.Pattern[str]:
    """The Python equivalent of a Java pattern (constructs not handled raise, never pass silently)."""
    out, i, depth, after_class_escape = [], 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1]
            if nxt in "pP" and pattern[i + 2] == "{":
                end = pattern.index("}", i)
                body, i = _category_ranges(pattern[i + 3:end]), end + 1
                negate = nxt == "P"
                if depth:
                    if negate:
                        raise NotImplementedError(f"\\P inside a class in {pattern!r}")
                    out.append(body)
                else:
                    out.append(f"[{'^' if negate else ''}{body}]")
                after_class_escape = True
                continue
            if nxt == "u":
                esc, i = _char(pattern, i)
                out.append(esc)
                after_class_escape = False
                continue
            if nxt in "QE" or (nxt == "x" and pattern[i + 2] == "{"):
                raise NotImplementedError(f"\\{nxt} in {pattern!r}")
            out.append("\\Z" if nxt == "z" else pattern[i:i + 2])
            after_class_escape = nxt in "wdsWDS"
            i += 2
            continue
        if depth:
            if c == "[" or pattern.startswith("&&", i):
                raise NotImplementedError(f"a nested class or intersection in {pattern!r}")
            if c == "]":
                depth = 0
            elif c == "-" and after_class_escape and pattern[i + 1] != "]":
                c = "\\-"  # Java: a '-' after \w or \p{..} is a literal
            elif c in "|&~":
                c = "\\" + c  # literals in Java; Python reserves doubled ones for set operations
            out.append(c)
        elif c == "[":
            depth = 1
            out.append(c)
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):  # a leading ']' is a literal
                out.append("\\]")
                i += 1
        elif c == "." :
            out.append(_JAVA_DOT)
        elif c == "$" and (m := re.match(r"\{\d+(,\d*)?\}|[*+?]", pattern[i + 1:])):
            out.append("$")  # Java accepts a quantified anchor: it is still just the anchor
            i += m.end()
        else:
            out.append(c)
        after_class_escape = False
        i += 1
    return re.compile("".join(out), re.ASCII)  # Java's \w \d \s \b are ASCII-only


# ------------------------------------------------------------------------------------------
# the check


def _units(text: str) -> int:
    """Java's String.length(): UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def violations(shape: Any, value: Any, path: str) -> Iterator[str]:
    """Every rule of `shape` (a botocore Shape) that `value` breaks, as 'path: rule'."""
    if shape is None or value is None:
        return
    meta, kind = shape.metadata, shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in value.items():
            if name in shape.members:
                yield from violations(shape.members[name], member, f"{path}.{name}")
        return
    if kind == "list" and isinstance(value, (list, tuple)):
        yield from _bounds(meta, len(value), path, "items")
        for i, item in enumerate(value):
            yield from violations(shape.member, item, f"{path}[{i}]")
        return
    if kind == "map" and isinstance(value, dict):
        yield from _bounds(meta, len(value), path, "entries")
        for key, item in value.items():
            yield from violations(shape.key, key, f"{path} key {key!r}")
            yield from violations(shape.value, item, f"{path}[{key!r}]")
        return
    if kind == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            yield f"{path}: {value!r} is not one of the enum {shape.name} {sorted(shape.enum)}"
        yield from _bounds(meta, _units(value), path, "characters")
        if "pattern" in meta and not java_regex(meta["pattern"]).fullmatch(value):
            yield f"{path}: {_show(value)} does not match the pattern {meta['pattern']!r} of {shape.name}"
        return
    if kind == "blob" and isinstance(value, (bytes, bytearray)):
        yield from _bounds(meta, len(value), path, "bytes")
        return
    if kind in ("integer", "long", "float", "double") and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        if "min" in meta and value < meta["min"]:
            yield f"{path}: {value} is below the minimum {meta['min']} of {shape.name}"
        if "max" in meta and value > meta["max"]:
            yield f"{path}: {value} is above the maximum {meta['max']} of {shape.name}"


def _bounds(meta: dict[str, Any], size: int, path: str, unit: str) -> Iterator[str]:
    if "min" in meta and size < meta["min"]:
        yield f"{path}: {size} {unit}, fewer than the minimum {meta['min']}"
    if "max" in meta and size > meta["max"]:
        yield f"{path}: {size} {unit}, more than the maximum {meta['max']}"


def _show(value: str) -> str:
    return repr(value if len(value) <= 120 else value[:117] + "...")


def check(operation_model: Any, params: dict[str, Any]) -> None:
    """Refuse `params` as AWS would if they break a constraint of the operation's input shape."""
    service = operation_model.service_model.service_name
    CHECKED.add((service, operation_model.name))
    REQUESTS[0] += 1
    broken = list(violations(operation_model.input_shape, params, operation_model.name))
    if broken:
        message = f"{service}.{operation_model.name} would be refused by AWS (ValidationException): " + "; ".join(broken)
        VIOLATIONS.append(message)
        if os.environ.get(REPORT):  # as it happens: a long run shows its findings before it ends
            with open(f"{os.environ[REPORT]}.violations", "a") as log:
                log.write(message + "\n")
        raise ApiConstraintError(message)


def install() -> None:
    """Check every request of every botocore client from now on (idempotent)."""
    from botocore.client import BaseClient

    original = BaseClient._convert_to_request_dict
    if getattr(original, "checks_constraints", False):
        return

    def convert(self: Any, api_params: dict[str, Any], operation_model: Any, *args: Any, **kwargs: Any) -> Any:
        check(operation_model, api_params)
        return original(self, api_params, operation_model, *args, **kwargs)

    convert.checks_constraints = True  # type: ignore[attr-defined]
    BaseClient._convert_to_request_dict = convert  # type: ignore[method-assign]


@contextmanager
def refused() -> Iterator[list[str]]:
    """For tests of refusals: the violations recorded inside the block are claimed (not failures)."""
    before = len(VIOLATIONS)
    claimed: list[str] = []
    try:
        yield claimed
    finally:
        claimed.extend(VIOLATIONS[before:])
        del VIOLATIONS[before:]
