"""Text that leaves regen is valid UTF-8.

Python strings can hold lone surrogates (a file name os.fsdecode could not
decode keeps its bad bytes as U+DC80..U+DCFF; JSON ``"\\udc80"`` escapes),
which neither orjson nor ``str.encode`` will write. These are the net for the
rare event that carries one: such characters become ``\\xNN`` escapes of the
bytes they stand for (``\\udNNN`` for surrogates that stand for no byte).
"""

from __future__ import annotations

from typing import Any


def valid_utf8(text: str) -> bytes:
    """``text`` encoded as UTF-8, never raising."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return escape_surrogates(text).encode()


def escape_surrogates(text: str) -> str:
    return "".join(_escape(ch) if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def valid_json_value(value: Any) -> Any:
    """``value`` (what ``to_dict`` gives) with every string, keys included, made valid."""
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, dict):
        return {valid_json_value(k): valid_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [valid_json_value(v) for v in value]
    return value
