"""Reading a record (an event, a table row) from a JSON value, checked against
the dataclass's own field annotations.

Every record on every topic goes through here, internal ones included: JSON
Schema costs about 0.4 ms an event, so the records written by regen skip it,
and this check is what still stands between a forged body and the tables. It
is compiled once per class (``typing.get_type_hints``) into one small
function per field, so reading costs a few microseconds.

Supported annotations: str, int (not bool; signed 64-bit), float (finite;
ints accepted), bool, Literal[...], X | None, tuple[X, ...], fixed tuples,
nested dataclasses, dict / dict[str, X], each optionally ``Annotated`` with
the bounds in ``schemas.bounds``. Unknown fields are ignored.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields, is_dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal, TypeVar, Union

from regen.schemas.bounds import (
    INT64_MAX,
    INT64_MIN,
    MAX_ITEMS,
    MAX_SHORT_CHARS,
    IsoTimestamp,
    Length,
    MaxItems,
    MinItems,
    OneOf,
    Pattern,
    Range,
    Shape,
)
from regen.schemas.exceptions import SchemaError

T = TypeVar("T")
Check = Callable[[Any, str], Any]  # (value, where) -> the value as the record holds it; raises SchemaError


def read_record(cls: type[T], body: Any) -> T:
    """``cls`` built from ``body``, or SchemaError naming the field and what is valid."""
    return _reader(cls)(body, cls.__name__)  # type: ignore[arg-type]  # a class is hashable


def show(value: Any, limit: int = 60) -> str:
    """A bad value, quoted short enough for a log line or a header."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", tuple: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _refuse(where: str, expected: str, value: Any) -> SchemaError:
    return SchemaError(f"{where}: expected {expected}, got {_type_name(value)} {show(value)}")


@cache
def _reader(cls: type) -> Check:
    hints = typing.get_type_hints(cls, include_extras=True)
    plan = []
    for f in fields(cls):
        required = f.default is MISSING and f.default_factory is MISSING
        plan.append((f.name, required, _compile(hints[f.name])))
    name = cls.__name__

    def read(body: Any, where: str) -> Any:
        if type(body) is not dict:
            raise _refuse(where if where != name else f"{name} body", "a JSON object", body)
        values = {}
        for field_name, required, check in plan:
            if field_name in body:
                values[field_name] = check(body[field_name], f"{where}.{field_name}")
            elif required:
                raise SchemaError(f"{where}: required field {field_name!r} is missing")
        return cls(**values)

    return read


def _compile(hint: Any) -> Check:
    marks: tuple = ()
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extra = typing.get_args(hint)
        marks = tuple(extra)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1 or len(args) != 2:
            raise TypeError(f"only X | None unions are supported, not {hint}")
        return _optional(_compile(_annotate(inner[0], marks)))
    if hint is str:
        return _string(marks)
    if hint is bool:
        return _boolean
    if hint is int:
        return _integer(_range(marks))
    if hint is float:
        return _number(_range(marks))
    if origin is Literal:
        return _literal(args)
    if hint is tuple or origin is tuple:
        return _tuple(args, _max_items(marks), _min_items(marks))
    if hint is dict or origin is dict:
        shape = next((m.record for m in marks if isinstance(m, Shape)), None)
        return _mapping(args) if shape is None else _shaped(shape)
    if isinstance(hint, type) and is_dataclass(hint):
        return lambda value, where: _reader(hint)(value, where)
    if hint is Any:
        return lambda value, where: value
    raise TypeError(f"no typed reading for annotation {hint!r}")


def _annotate(hint: Any, marks: tuple) -> Any:
    return typing.Annotated[(hint, *marks)] if marks else hint


def _optional(check: Check) -> Check:
    return lambda value, where: None if value is None else check(value, where)


def _range(marks: tuple) -> Range:
    return next((m for m in marks if isinstance(m, Range)), Range())


def _max_items(marks: tuple) -> int:
    return next((m.count for m in marks if isinstance(m, MaxItems)), MAX_ITEMS)


def _min_items(marks: tuple) -> int:
    return next((m.count for m in marks if isinstance(m, MinItems)), 0)


def _string(marks: tuple) -> Check:
    length = next((m for m in marks if isinstance(m, Length)), Length(MAX_SHORT_CHARS))
    pattern = next((re.compile(m.regex) for m in marks if isinstance(m, Pattern)), None)
    timestamp = next((m for m in marks if isinstance(m, IsoTimestamp)), None)
    choices = next((frozenset(m.values) for m in marks if isinstance(m, OneOf)), None)
    low, high = length.min_length, length.max_length

    def check(value: Any, where: str) -> str:
        if type(value) is not str:
            raise _refuse(where, "a string", value)
        if not low <= len(value) <= high:
            raise SchemaError(f"{where}: expected a string of {low} to {high} characters, "
                              f"got {len(value)}: {show(value)}")
        if pattern is not None and pattern.match(value) is None:
            raise SchemaError(f"{where}: {show(value)} does not match {pattern.pattern}")
        if timestamp is not None and (value or not timestamp.allow_empty):
            _check_timestamp(value, where)
        if choices is not None and value not in choices:
            raise _refuse(where, f"one of {', '.join(sorted(choices))}", value)
        return value

    return check


def _check_timestamp(value: str, where: str) -> None:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SchemaError(f"{where}: expected an ISO-8601 timestamp such as 2026-01-31T12:00:00Z, "
                          f"got {show(value)}") from None


def _boolean(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise _refuse(where, "true or false", value)
    return value


def _integer(bounds: Range) -> Check:
    low = INT64_MIN if bounds.minimum is None else bounds.minimum
    high = INT64_MAX if bounds.maximum is None else bounds.maximum

    def check(value: Any, where: str) -> int:
        if type(value) is not int:  # bool is an int subclass: refused here
            raise _refuse(where, f"an integer from {low} to {high}", value)
        if not low <= value <= high:
            raise SchemaError(f"{where}: expected an integer from {low} to {high}, got {show(value)}")
        return value

    return check


def _number(bounds: Range) -> Check:
    low, high = bounds.minimum, bounds.maximum
    wanted = "a finite number" + (f" >= {low}" if low is not None else "") + (f" <= {high}" if high is not None else "")

    def check(value: Any, where: str) -> float:
        kind = type(value)
        if kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                raise SchemaError(f"{where}: expected {wanted}, got {show(value)}")
            value = float(value)
        elif kind is not float or not math.isfinite(value):
            raise _refuse(where, wanted, value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise SchemaError(f"{where}: expected {wanted}, got {show(value)}")
        return value

    return check


def _literal(allowed: tuple) -> Check:
    accepted = frozenset((type(a), a) for a in allowed)
    wanted = "one of " + ", ".join(repr(a) for a in allowed)

    def check(value: Any, where: str) -> Any:
        try:
            if (type(value), value) in accepted:
                return value
        except TypeError:  # unhashable (a list, an object)
            pass
        raise _refuse(where, wanted, value)

    return check


def _sequence(value: Any, where: str, max_items: int, min_items: int = 0) -> list | tuple:
    if type(value) not in (list, tuple):
        raise _refuse(where, "an array", value)
    if len(value) > max_items:
        raise SchemaError(f"{where}: expected at most {max_items} items, got {len(value)}")
    if len(value) < min_items:
        raise SchemaError(f"{where}: expected at least {min_items} items, got {len(value)}")
    return value


def _tuple(args: tuple, max_items: int, min_items: int = 0) -> Check:
    if not args:  # bare ``tuple``: any JSON items
        return lambda value, where: tuple(_sequence(value, where, max_items, min_items))
    if len(args) == 2 and args[1] is Ellipsis:
        item = _compile(args[0])
        return lambda value, where: tuple(item(v, f"{where}[{i}]")
                                          for i, v in enumerate(_sequence(value, where, max_items, min_items)))
    items = [_compile(a) for a in args]

    def fixed(value: Any, where: str) -> tuple:
        _sequence(value, where, max_items)
        if len(value) != len(items):
            raise SchemaError(f"{where}: expected exactly {len(items)} items, got {len(value)}: {show(value)}")
        return tuple(check(v, f"{where}[{i}]") for i, (check, v) in enumerate(zip(items, value, strict=True)))

    return fixed


def _mapping(args: tuple) -> Check:
    """A JSON object with string keys; its values checked when the annotation says how."""
    value_check = _compile(args[1]) if args else None

    def check(value: Any, where: str) -> dict:
        if type(value) is not dict:
            raise _refuse(where, "a JSON object", value)
        for key in value:
            if type(key) is not str:
                raise SchemaError(f"{where}: expected string keys, got {show(key)}")
        if value_check is None:
            return value
        return {k: value_check(v, f"{where}.{k}") for k, v in value.items()}

    return check


def _shaped(record: type) -> Check:
    def check(value: Any, where: str) -> dict:
        _reader(record)(value, where)
        return value

    return check
