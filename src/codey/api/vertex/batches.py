"""Vertex AI's batch prediction jobs for the Codey models, on local files.

`batchPredictionJobs` create, get, list and cancel, in the shapes Google's JobServiceClient
reads. There is no bucket: `inputConfig.gcsSource.uris` and `outputConfig.gcsDestination.
outputUriPrefix` name paths (plain or file://) inside the configured `batch.folder`. The input
is JSONL, one instance per line as `:predict` takes it; the output is
`<prefix>/prediction-<model>-<time>/predictions_00001.jsonl`, one line per instance,
`{"instance", "predictions", "status"}` with an empty status when it was answered.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codey.api.calls import batches_of, principal
from codey.api.errors import invalid
from codey.api.models import pick_model
from codey.api.unicode import lone_surrogate, not_text
from codey.api.vertex.protocol import JOBS, Parameters, PredictRequest, family_of
from codey.config import Settings
from codey.errors import InvalidRequest, NotFound
from codey.gateway.auth import Principal
from codey.gateway.pipeline import Call
from codey.store.batches import BatchJob, BatchStore, Counts, Line

router = APIRouter(tags=["vertex batch"])
Caller = Annotated[Principal, Depends(principal)]
_JOBS_PATH = "/v1/projects/{project}/locations/{location}/batchPredictionJobs"
STATES = {
    "validating": "JOB_STATE_PENDING",
    "in_progress": "JOB_STATE_RUNNING",
    "finalizing": "JOB_STATE_RUNNING",
    "completed": "JOB_STATE_SUCCEEDED",
    "failed": "JOB_STATE_FAILED",
    "cancelling": "JOB_STATE_CANCELLING",
    "cancelled": "JOB_STATE_CANCELLED",
    "expired": "JOB_STATE_EXPIRED",
}
WINDOW_SECONDS = 24 * 3600


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class GcsSource(_Body):
    uris: list[str] = Field(min_length=1)


class InputConfig(_Body):
    instances_format: Literal["jsonl"] = Field(alias="instancesFormat")
    gcs_source: GcsSource = Field(alias="gcsSource")


class GcsDestination(_Body):
    output_uri_prefix: str = Field(alias="outputUriPrefix", min_length=1)


class OutputConfig(_Body):
    predictions_format: Literal["jsonl"] = Field(alias="predictionsFormat")
    gcs_destination: GcsDestination = Field(alias="gcsDestination")


class BatchPredictionJobIn(_Body):
    display_name: str = Field(alias="displayName", min_length=1)
    model: str
    input_config: InputConfig = Field(alias="inputConfig")
    output_config: OutputConfig = Field(alias="outputConfig")
    model_parameters: dict[str, Any] = Field(default_factory=dict, alias="modelParameters")


def local_path(folder: Path, uri: str) -> Path:
    """A path inside `folder` from a URI as a client writes it (plain, relative or file://)."""
    if uri.startswith("gs://"):
        raise InvalidRequest(
            f"{uri} is a Cloud Storage URI; codey has no bucket.",
            hint=f"Put the file under {folder} and send its path.",
        )
    path = Path(uri.removeprefix("file://"))
    if "\0" in uri or any(len(part.encode()) > 255 for part in path.parts):
        raise InvalidRequest(
            f"{uri[:80]!r} is not a file path here (a NUL, or a name over 255 bytes)."
        )
    resolved = (folder / path).resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise InvalidRequest(f"{uri} is outside {folder}, the folder batch jobs may use.")
    return resolved


@router.post(_JOBS_PATH)
async def create_job(
    project: str, location: str, body: BatchPredictionJobIn, request: Request, who: Caller
) -> dict[str, Any]:
    """Predict for every instance of the input files, behind interactive traffic."""
    settings: Settings = request.app.state.runtime.settings
    model = body.model.rsplit("/", 1)[-1]
    if family_of(model) is None:
        raise NotFound(f"Publisher model {body.model!r} is not served here.")
    try:
        Parameters.model_validate(body.model_parameters)
    except ValidationError as exc:
        raise InvalidRequest(f"modelParameters: {invalid(exc).message}") from None
    folder = settings.batch.folder
    local_path(folder, body.output_config.gcs_destination.output_uri_prefix)
    uris = body.input_config.gcs_source.uris
    instances = await asyncio.to_thread(_instances, folder, uris, settings.batch.max_lines)
    now = int(time.time())
    job = BatchJob(
        id=str(secrets.randbelow(9 * 10**17) + 10**17),
        owner=who.name,
        kind="vertex",
        endpoint=f"projects/{project}/locations/{location}",
        status="validating",
        created_at=now,
        expires_at=now + WINDOW_SECONDS,
        model=model,
        options=body.model_dump(by_alias=True),
    )
    store = batches_of(request)
    await store.create(job, [Line(job.id, n, None, text) for n, text in enumerate(instances)])
    request.app.state.batch_runner.wake()
    return job_object(job, Counts(len(instances), 0, 0))


def _instances(folder: Path, uris: list[str], max_lines: int) -> list[str]:
    instances = []
    for uri in uris:
        path = local_path(folder, uri)
        if not path.is_file():
            raise InvalidRequest(f"No input file at {uri} (looked for {path}).")
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{uri} is not UTF-8 text (byte {exc.start}).") from None
        instances += [line for line in text.splitlines() if line.strip()]
    if not instances:
        raise InvalidRequest("The input files hold no instances.")
    if len(instances) > max_lines:
        raise InvalidRequest(f"{len(instances):,} instances; a job takes {max_lines:,}.")
    return instances


@router.get(_JOBS_PATH + "/{job_id}")
async def get_job(
    project: str, location: str, job_id: str, request: Request, who: Caller
) -> dict[str, Any]:
    job = await _owned(request, who, project, location, job_id)
    return job_object(job, (await batches_of(request).counts([job.id]))[job.id])


@router.get(_JOBS_PATH)
async def list_jobs(
    project: str,
    location: str,
    request: Request,
    who: Caller,
    page_size: Annotated[int, Query(alias="pageSize", ge=0, le=1000)] = 100,
) -> dict[str, Any]:
    store = batches_of(request)
    jobs = await store.jobs(None if who.admin else who.name, "vertex", page_size or 100)
    endpoint = f"projects/{project}/locations/{location}"
    jobs = [j for j in jobs if j.endpoint == endpoint]
    counts = await store.counts([j.id for j in jobs])
    return {"batchPredictionJobs": [job_object(j, counts[j.id]) for j in jobs]}


@router.post(_JOBS_PATH + "/{job_id}:cancel")
async def cancel_job(
    project: str, location: str, job_id: str, request: Request, who: Caller
) -> dict[str, Any]:
    """Stop a job; what it answered so far is written out."""
    await _owned(request, who, project, location, job_id)
    await batches_of(request).cancel(job_id)
    request.app.state.batch_runner.wake()
    return {}


async def _owned(
    request: Request, who: Principal, project: str, location: str, job_id: str
) -> BatchJob:
    job = await batches_of(request).get(job_id)
    endpoint = f"projects/{project}/locations/{location}"
    if (
        job is None
        or (job.kind, job.endpoint) != ("vertex", endpoint)
        or not (who.admin or job.owner == who.name)
    ):
        raise NotFound(f"No batch prediction job {job_id}.")
    return job


def job_object(job: BatchJob, counts: Counts) -> dict[str, Any]:
    given, t = job.options, job.times
    body: dict[str, Any] = {
        "name": f"{job.endpoint}/batchPredictionJobs/{job.id}",
        "displayName": given["displayName"],
        "model": given["model"],
        "inputConfig": given["inputConfig"],
        "outputConfig": given["outputConfig"],
        "modelParameters": given.get("modelParameters") or {},
        "state": STATES[job.status],
        "createTime": _rfc3339(job.created_at),
        "updateTime": _rfc3339(max([job.created_at, *t.values()])),
        "completionStats": {
            "successfulCount": str(counts.completed),
            "failedCount": str(counts.failed),
            "incompleteCount": str(counts.pending),
        },
    }
    if "in_progress_at" in t:
        body["startTime"] = _rfc3339(t["in_progress_at"])
    ended = next((t[k] for k in ("completed_at", "cancelled_at", "expired_at") if k in t), None)
    if ended is not None:
        body["endTime"] = _rfc3339(ended)
    if "directory" in given:
        body["outputInfo"] = {"gcsOutputDirectory": given["directory"]}
    if given.get("errors"):
        body["error"] = {"code": 7, "message": given["errors"][0]["message"]}  # PERMISSION_DENIED
    return body


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class VertexBatches:
    """The runner's view of Vertex batch prediction jobs."""

    def __init__(self, settings: Settings, model_names: list[str]) -> None:
        self.settings = settings
        self.model_names = model_names

    def call(self, job: BatchJob, line: Line, principal: Principal) -> Call:
        model = job.model or ""
        try:
            instance = json.loads(line.request)
            if not isinstance(instance, dict):
                raise InvalidRequest(f"Line {line.line + 1} is not a JSON object.")
            if (where := lone_surrogate(instance)) is not None:
                raise InvalidRequest(f"Line {line.line + 1}, {not_text(where)}")
            body = PredictRequest.model_validate(
                {"instances": [instance], "parameters": job.options.get("modelParameters") or {}}
            )
            resource = f"{job.endpoint}/publishers/google/models/{model}"
            work = JOBS[family_of(model)](body, resource)  # type: ignore[index]
        except (ValidationError, RequestValidationError) as exc:
            raise invalid(exc) from None
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest(f"Line {line.line + 1} is not JSON: {exc}.") from None
        asked = pick_model(self.settings, self.model_names, work.service, work.asked_model())
        return Call(principal, work, asked, batch=True)

    async def finish(self, job: BatchJob, store: BatchStore) -> dict[str, Any]:
        """Every settled instance, in input order, in one predictions file."""
        prefix = job.options["outputConfig"]["gcsDestination"]["outputUriPrefix"]
        stamp = datetime.now(UTC).strftime("%Y_%m_%dT%H_%M_%S_%fZ")
        directory = f"{prefix.rstrip('/')}/prediction-{job.model}-{stamp}"
        folder = local_path(self.settings.batch.folder, directory)
        folder.mkdir(parents=True, exist_ok=True)
        lines = sorted(
            [*await store.settled(job.id, "done"), *await store.settled(job.id, "failed")],
            key=lambda x: x.line,
        )
        with (folder / "predictions_00001.jsonl").open("w", encoding="utf-8") as out:
            for line in lines:
                out.write(json.dumps(prediction_line(line)) + "\n")
        job.options["directory"] = directory
        return {"options": job.options}


def prediction_line(line: Line) -> dict[str, Any]:
    try:
        instance = json.loads(line.request)
    except (ValueError, RecursionError):
        instance = line.request
    result = json.loads(line.result or "{}")
    if "body" in result:
        return {"instance": instance, "predictions": result["body"]["predictions"], "status": ""}
    return {"instance": instance, "status": result.get("error", {}).get("message", "failed")}
