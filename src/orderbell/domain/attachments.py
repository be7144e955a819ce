"""E-mail attachments: which files may be attached, how large, under which names.

Two sources: a template's static documents (terms and conditions, the withdrawal form) and
an event's own files (the invoice PDF of that order). Both pass the same checks, and every
refusal names the field.
"""

from __future__ import annotations

import base64
import binascii

from orderbell.errors import InvalidInput

MAX_BYTES = 512 * 1024  #: one file, decoded (base64 of it still fits a 1 MB request body)
MAX_PER_EVENT = 5
MAX_PER_TEMPLATE = 10
MAX_FILENAME = 255

#: What a shop may attach: documents and images, never HTML or executables.
CONTENT_TYPES = frozenset(
    {
        "application/pdf",
        "application/xml",
        "text/xml",
        "text/plain",
        "text/csv",
        "image/png",
        "image/jpeg",
        "image/gif",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.oasis.opendocument.text",
    }
)
#: The first bytes a file of this type starts with: a "PDF" that is not one is refused.
_MAGIC = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}


def check_filename(value: str, field: str) -> str:
    """A bare file name: no path, no line breaks or control characters, not . or .."""
    name = value.strip()
    if not name:
        raise InvalidInput("must not be empty", field=field)
    if len(name) > MAX_FILENAME:
        raise InvalidInput(f"is longer than {MAX_FILENAME} characters", field=field)
    if any(c in name for c in "\r\n\x00"):
        raise InvalidInput("must not contain line breaks or NUL characters", field=field)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise InvalidInput("must be a file name without a path", field=field)
    if not name.isprintable():
        raise InvalidInput("must not contain control characters", field=field)
    return name


def check_content_type(value: str, field: str) -> str:
    """One of the allowed MIME types (lower-cased, without parameters)."""
    kind = value.split(";", 1)[0].strip().lower()
    if kind not in CONTENT_TYPES:
        allowed = ", ".join(sorted(CONTENT_TYPES))
        raise InvalidInput(f"{kind!r} is not allowed; use one of: {allowed}", field=field)
    return kind


def decode_base64(value: str, field: str) -> bytes:
    """Strict base64 (standard alphabet, padded; whitespace from line wrapping ignored)."""
    compact = "".join(value.split())
    if len(compact) > (MAX_BYTES + 2) // 3 * 4:
        raise InvalidInput(f"the file is larger than {MAX_BYTES} bytes", field=field)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("is not valid base64", field=field) from None
    return data


def check_data(data: bytes, content_type: str, field: str) -> bytes:
    """Not empty, not over the cap, and what its content type says it is."""
    if not data:
        raise InvalidInput("the file is empty", field=field)
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"the file is larger than {MAX_BYTES} bytes", field=field)
    magic = _MAGIC.get(content_type)
    if magic and not data.startswith(magic):
        raise InvalidInput(f"the file is not a {content_type} file", field=field)
    return data
