"""OpenAI's Files API, as much as batch jobs need: upload, list, get, content, delete.

Files live in codey's database with their SHA-256; nothing in them is ever run. Callers see
their own files; an admin key sees every file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from codey.api.calls import batches_of, principal
from codey.api.limits import FileTooLarge
from codey.errors import NotFound
from codey.gateway.auth import Principal
from codey.store.batches import StoredFile

router = APIRouter(prefix="/v1", tags=["openai batch"])
Caller = Annotated[Principal, Depends(principal)]
PURPOSES = ("batch", "batch_output")
"""What a file may be uploaded for here, and what the batch runner writes."""


def file_object(f: StoredFile) -> dict[str, Any]:
    return {
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": f.created_at,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def page(data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    """A list in OpenAI's paged shape."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


async def owned_file(request: Request, who: Principal, file_id: str) -> StoredFile:
    """The caller's file by id, or 404 (another caller's file is not there for them)."""
    found = await batches_of(request).file(file_id)
    if found is None or not (who.admin or found.owner == who.name):
        raise NotFound(f"No such file: {file_id!r}.", hint="List your files with GET /v1/files.")
    return found


@router.post("/files")
async def upload(
    request: Request,
    who: Caller,
    file: Annotated[UploadFile, File(description="JSONL, one request per line.")],
    purpose: Annotated[Literal["batch"], Form(description="Files here are batch jobs' input.")],
) -> dict[str, Any]:
    """Upload a batch input file; its lines are read when a batch is made from it."""
    limit = request.app.state.runtime.settings.batch.max_file_bytes
    content = await file.read(limit + 1)
    if len(content) > limit:
        raise FileTooLarge(limit)
    stored = await batches_of(request).add_file(
        who.name, purpose, file.filename or "upload.jsonl", content
    )
    return file_object(stored)


@router.get("/files")
async def list_files(
    request: Request,
    who: Caller,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    """The caller's files, newest first."""
    owner = None if who.admin else who.name
    files = [file_object(f) for f in await batches_of(request).files(owner, purpose, limit)]
    if order == "asc":
        files.reverse()
    return page(files)


@router.get("/files/{file_id}")
async def get_file(file_id: str, request: Request, who: Caller) -> dict[str, Any]:
    return file_object(await owned_file(request, who, file_id))


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, request: Request, who: Caller) -> Response:
    """The file's bytes: a job's input, output or errors, as JSONL."""
    await owned_file(request, who, file_id)
    content = await batches_of(request).content(file_id)
    return Response(content, media_type="application/jsonl")


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, request: Request, who: Caller) -> dict[str, Any]:
    await owned_file(request, who, file_id)
    await batches_of(request).delete_file(file_id)
    return {"id": file_id, "object": "file", "deleted": True}
