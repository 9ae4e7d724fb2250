"""Text every layer can store: PostgreSQL refuses NUL in text columns, and UTF-8 has no lone surrogates."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from contracts.errors import InvalidInputError

#: what no text column can hold: NUL (PostgreSQL) and UTF-16 surrogates (not encodable as UTF-8)
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_reason(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    found = UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "a NUL character" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
    return f"contains {what}, which cannot be stored"


def check_storable(text: str, name: str = "value") -> str:
    """`text` unchanged, else `InvalidInputError` naming `name`."""
    reason = unstorable_reason(text)
    if reason is not None:
        raise InvalidInputError(f"{name} {reason}")
    return text


def _storable(value: str) -> str:
    reason = unstorable_reason(value)
    if reason is not None:
        raise ValueError(f"the text {reason}")
    return value


#: a text input the catalog can store (no NUL, no lone surrogate): every free-text parameter and field
StorableText = Annotated[str, AfterValidator(_storable)]
