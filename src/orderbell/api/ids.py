"""Row ids in paths and filters: a positive number a BIGINT column can hold.

An id past 2**63 - 1 cannot exist, but handed to the database it overflows (SQLite) or is
out of range (PostgreSQL) — a 500. Declared with these types, it is a 422 naming the
parameter before any query runs.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Query

MAX_ROW_ID = 2**63 - 1  #: the largest value of a BIGINT primary key

_DIGITS = re.compile(r"[0-9]{1,19}")


def parse_row_id(text: str) -> int | None:
    """A row id written in a form or a query string: ASCII digits for a number from 1 to
    MAX_ROW_ID; None for anything else (other scripts' digits, "²", signs, a number no
    BIGINT holds)."""
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ROW_ID else None


RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
RowIdFilter = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
