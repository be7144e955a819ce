"""A template's static documents (terms and conditions, the withdrawal form), sent with
every e-mail of that template. Uploaded as JSON with base64 contents."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Response

from orderbell.api.deps import Read, ServicesDep, ShopId
from orderbell.api.ids import RowId
from orderbell.api.schemas import AttachmentIn
from orderbell.store import attachments as attachment_store

router = APIRouter(prefix="/v1/templates/{template_id}/attachments", tags=["templates"])


@router.post("", status_code=201)
def add_attachment(svc: ServicesDep, shop: ShopId, template_id: RowId, body: AttachmentIn) -> Any:
    """Attach a file (at most 512 KiB; PDF, documents, images) to an e-mail template."""
    with svc.engine.begin() as conn:
        return attachment_store.add_to_template(conn, shop, template_id, body, svc.clock.now())


@router.get("")
def list_attachments(conn: Read, shop: ShopId, template_id: RowId) -> Any:
    """The template's attachments: names, types and sizes."""
    return {"items": attachment_store.list_for_template(conn, shop, template_id)}


@router.get("/{attachment_id}", response_class=Response)
def download_attachment(conn: Read, shop: ShopId, template_id: RowId, attachment_id: RowId) -> Any:
    """The file itself."""
    row = attachment_store.get_file(conn, shop, template_id, attachment_id)
    disposition = f"attachment; filename*=UTF-8''{quote(row.filename)}"
    return Response(
        content=bytes(row.data),
        media_type=row.content_type,
        headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"},
    )


@router.delete("/{attachment_id}", status_code=204)
def delete_attachment(
    svc: ServicesDep, shop: ShopId, template_id: RowId, attachment_id: RowId
) -> None:
    """Remove an attachment; e-mails not yet sent go without it."""
    with svc.engine.begin() as conn:
        attachment_store.remove(conn, shop, template_id, attachment_id)
