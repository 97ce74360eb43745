"""`codey batch`: hand a running server a file of requests and walk away.

The commands speak OpenAI's Batch API to the server (`--url`, the configured host and port by
default), so a job submitted here is the same as one from the openai SDK.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from codey.cli.output import console, errors, fail, print_json
from codey.config import Settings
from codey.errors import CodeyError, InvalidRequest

app = typer.Typer(help="Batch jobs: many requests in a JSONL file, run at batch prices.")
Url = Annotated[
    str | None, typer.Option(help="The codey server; default: host and port of the config.")
]
ApiKey = Annotated[
    str | None, typer.Option(envvar="CODEY_API_KEY", help="API key, if the server needs one.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
FINISHED = ("completed", "failed", "cancelled", "expired")


@contextmanager
def _server(
    ctx: typer.Context, url: str | None, api_key: str | None, as_json: bool = False
) -> Iterator[httpx.Client]:
    """A client of the server's /v1; what goes wrong inside ends the command, said clearly."""
    settings: Settings = ctx.obj
    base = url or f"http://{settings.server.host}:{settings.server.port}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(base_url=base.rstrip("/") + "/v1", headers=headers, timeout=60) as c:
            yield c
    except CodeyError as exc:
        raise fail(exc, as_json) from exc


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise CodeyError(
            f"No codey server answers at {client.base_url}: {exc}.",
            hint="Start one with `codey serve`, or point --url at one.",
        ) from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise CodeyError(f"{response.status_code}: {message}")
    return response


def submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL requests.")],
    endpoint: Annotated[
        str,
        typer.Option(
            help="/v1/chat/completions, /v1/completions, /api/v1/codey/generate "
            "or /api/v1/codey/complete."
        ),
    ] = "/v1/chat/completions",
    wait: Annotated[bool, typer.Option(help="Show progress until the job ends.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload FILE and start a batch job on it; prints the job's id."""
    with _server(ctx, url, api_key, as_json) as client:
        files = {"file": (file.name, file.read_bytes(), "application/jsonl")}
        uploaded = _call(client, "POST", "/files", files=files, data={"purpose": "batch"})
        body = {"input_file_id": uploaded.json()["id"], "endpoint": endpoint}
        job = _call(client, "POST", "/batches", json=body).json()
        if wait:
            job = _follow(client, job, quiet=as_json)
    _show(job, as_json)


def status(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="The job's id.")],
    wait: Annotated[bool, typer.Option(help="Show progress until the job ends.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Where a job stands: its status and how many lines are done."""
    with _server(ctx, url, api_key, as_json) as client:
        job = _call(client, "GET", f"/batches/{batch_id}").json()
        if wait:
            job = _follow(client, job, quiet=as_json)
    _show(job, as_json)


def results(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="The job's id.")],
    errors_only: Annotated[bool, typer.Option("--errors", help="The error file instead.")] = False,
    output: Annotated[Path | None, typer.Option("-o", help="Write to this file.")] = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """A finished job's output (or error) file, as JSONL."""
    with _server(ctx, url, api_key) as client:
        job = _call(client, "GET", f"/batches/{batch_id}").json()
        file_id = job["error_file_id" if errors_only else "output_file_id"]
        if file_id is None:
            if job["status"] not in FINISHED:
                raise InvalidRequest(
                    f"The job is {job['status']}; its files are written when it ends.",
                    hint=f"Wait with `codey batch status {batch_id} --wait`.",
                )
            return
        content = _call(client, "GET", f"/files/{file_id}/content").content
    if output is not None:
        output.write_bytes(content)
        errors.print(f"wrote {output}")
    else:
        typer.echo(content.decode(), nl=False)


def cancel(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="The job's id.")],
    url: Url = None,
    api_key: ApiKey = None,
    as_json: JsonFlag = False,
) -> None:
    """Stop a job; what it answered so far stays in its output."""
    with _server(ctx, url, api_key, as_json) as client:
        job = _call(client, "POST", f"/batches/{batch_id}/cancel").json()
    _show(job, as_json)


def list_jobs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: JsonFlag = False,
) -> None:
    """The latest jobs, newest first."""
    with _server(ctx, url, api_key, as_json) as client:
        jobs = _call(client, "GET", "/batches", params={"limit": limit}).json()["data"]
    if as_json:
        print_json(jobs)
        return
    table = Table(title="codey batch jobs")
    table.add_column("id", no_wrap=True, min_width=30)
    for name in ("endpoint", "status", "done", "failed", "total", "created"):
        table.add_column(name, justify="right" if name in ("done", "failed", "total") else "left")
    for job in jobs:
        counts = job["request_counts"]
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(job["created_at"]))
        table.add_row(job["id"], job["endpoint"], job["status"], str(counts["completed"]),
                      str(counts["failed"]), str(counts["total"]), created)  # fmt: skip
    console.print(table if jobs else "[dim]no batch jobs[/]")


def _follow(client: httpx.Client, job: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Poll until the job ends, with a progress bar of its lines (on stderr)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=errors, disable=quiet) as progress:
        total = job["request_counts"]["total"]
        task = progress.add_task(job["id"], total=total, failed=0)
        while job["status"] not in FINISHED:
            time.sleep(0.5)
            job = _call(client, "GET", f"/batches/{job['id']}").json()
            counts = job["request_counts"]
            done = counts["completed"] + counts["failed"]
            label = f"{job['id']} {job['status']}"
            progress.update(task, completed=done, failed=counts["failed"], description=label)
    return job


def _show(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(job)
        return
    counts = job["request_counts"]
    console.print(
        f"[bold]{job['id']}[/] {job['status']}: {counts['completed']} done, "
        f"{counts['failed']} failed, of {counts['total']}"
    )
    for name in ("output_file_id", "error_file_id"):
        if job.get(name):
            console.print(f"  {name.removesuffix('_file_id')}: {job[name]}", highlight=False)
    if job["status"] not in FINISHED:
        console.print(f"[dim]follow it with: codey batch status {job['id']} --wait[/]")


app.command("submit")(submit)
app.command("status")(status)
app.command("results")(results)
app.command("cancel")(cancel)
app.command("list")(list_jobs)
