"""Row ids in paths and filters: a positive number a BIGINT column can hold.

An id past 2**63 - 1 cannot exist, but handed to the database it overflows (SQLite) or is
out of range (PostgreSQL) — a 500. Declared with these types, it is a 422 naming the
parameter before any query runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_ROW_ID = 2**63 - 1  #: the largest value of a BIGINT primary key

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
RowIdFilter = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
