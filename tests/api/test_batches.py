"""Batch jobs through real servers on the scripted fake: OpenAI's Batch API with the openai
SDK, Vertex's batch prediction jobs with Google's JobServiceClient, a real SIGKILL half way."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from google.api_core import exceptions as google_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import (
    BatchPredictionJob,
    GcsDestination,
    GcsSource,
    JobServiceClient,
    JobState,
)
from google.protobuf import json_format, struct_pb2
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from codey.backends.fake import Rule
from codey.gateway.auth import hash_key
from tests.api.conftest import ARTIFACTS, Server, start_server
from tests.fake_script import fake_config, write_script

LINES = 200
RULES = [
    *(Rule(f"Batch question {n}.", f"Answer {n}.", delay=0.01) for n in range(LINES)),
    *(Rule(f"a function named batch_{n} that returns {n}",
           f"```python\ndef batch_{n}():\n    return {n}\n```\n", delay=0.02)
      for n in range(LINES)),
]  # fmt: skip


def batch_server(tmp: Path, keys: str = "", **env: str) -> Server:
    script = write_script(tmp / "script.json", RULES)
    config = fake_config(tmp / "codey.toml", script)
    config.write_text(config.read_text() + keys)
    return start_server(tmp, CODEY_CONFIG=str(config), CODEY_BATCH__POLL_SECONDS="0.2", **env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("batches")
    server = batch_server(
        tmp,
        CODEY_BATCH__FOLDER=str(tmp / "batch"),
        CODEY_BATCH__MAX_FILE_BYTES="200000",
        CODEY_BATCH__REQUESTS_PER_DAY__COMPLETION="3",
    )
    yield server
    server.stop()


@pytest.fixture
def sdk(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def chat_line(n: int, custom_id: str | None = None) -> dict[str, Any]:
    return {
        "custom_id": custom_id or f"q-{n}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "codey",
            "messages": [{"role": "user", "content": f"Batch question {n}."}],
        },
    }


def generate_lines(prefix: str, count: int = LINES) -> list[dict[str, Any]]:
    """Native generation requests, each answered by the script with its own function."""
    return [
        {"custom_id": f"{prefix}{n}", "method": "POST", "url": "/api/v1/codey/generate",
         "body": {"prompt": f"a function named batch_{n} that returns {n}"}}
        for n in range(count)
    ]  # fmt: skip


def answers_its_line(result: dict[str, Any], prefix: str) -> bool:
    n = result["custom_id"].removeprefix(prefix)
    return f"def batch_{n}():" in result["response"]["body"]["generated_code"]


def jsonl(lines: list[Any]) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


def wait_for(
    sdk: openai.OpenAI, batch_id: str, done: Callable[[Any], bool], timeout: float = 120
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = sdk.batches.retrieve(batch_id)
        if done(batch):
            return batch
        time.sleep(0.1)
    pytest.fail(f"batch {batch_id} did not get there: {batch}")


def finished(batch: Any) -> bool:
    return batch.status in ("completed", "failed", "cancelled", "expired")


def output(sdk: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in sdk.files.content(file_id).text.splitlines()]


def ledger(server: Server, where: str = "1") -> list[sqlite3.Row]:
    with sqlite3.connect(server.log.parent / "codey.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(f"SELECT * FROM ledger WHERE {where}").fetchall()


def test_200_lines_through_the_openai_sdk_at_batch_prices(
    sdk: openai.OpenAI, server: Server
) -> None:
    uploaded = sdk.files.create(
        file=("questions.jsonl", jsonl([chat_line(n) for n in range(LINES)])), purpose="batch"
    )
    assert uploaded.purpose == "batch" and uploaded.bytes > 0
    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"team": "docs"},
    )
    assert batch.status in ("validating", "in_progress") and batch.metadata == {"team": "docs"}
    assert batch.request_counts is not None and batch.request_counts.total == LINES

    batch = wait_for(sdk, batch.id, finished)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == LINES and batch.request_counts.failed == 0
    assert batch.error_file_id is None
    results = output(sdk, batch.output_file_id)
    assert sorted(r["custom_id"] for r in results) == sorted(f"q-{n}" for n in range(LINES))
    for result in results:
        n = int(result["custom_id"].removeprefix("q-"))
        assert result["error"] is None and result["response"]["status_code"] == 200
        answer = result["response"]["body"]["choices"][0]["message"]["content"]
        assert answer == f"Answer {n}."
    assert batch.id in [b.id for b in sdk.batches.list(limit=5)]

    rows = ledger(server, "batch = 1 AND service = 'chat'")
    assert len(rows) == LINES and {r["status"] for r in rows} == {200}
    for row in rows:  # the batch price, not the interactive one
        expected = (row["input_chars"] * 0.0002 + row["output_chars"] * 0.0004) / 1000
        assert row["cost_usd"] == pytest.approx(expected) and row["cost_usd"] > 0
    usage = httpx.get(f"{server.url}/api/v1/codey/usage").json()["services"]["chat"]
    assert usage["batch"]["requests"] == LINES and usage["batch"]["remaining"] == 10_000 - LINES
    metrics = httpx.get(f"{server.url}/metrics").text
    assert (
        f'codey_batch_lines_total{{cache="miss",service="chat",status="200"}} {LINES}.0' in metrics
    )
    assert 'codey_requests_total{cache="miss",dialect="openai",service="chat"' not in metrics
    assert usage["requests"] == 0 and usage["remaining"] == 1000  # interactive quota untouched


def test_a_malformed_line_fails_alone_with_its_error(sdk: openai.OpenAI) -> None:
    lines = [
        chat_line(1, "good"),
        "{not json",
        {"custom_id": "no-body", "method": "POST", "url": "/v1/chat/completions"},
        chat_line(2, "wrong-url") | {"url": "/v1/completions"},
        chat_line(3, "bad-field") | {"body": {"model": "codey", "messages": []}},
        chat_line(4, "streamed") | {"body": chat_line(4)["body"] | {"stream": True}},
        "[" * 5000 + "]" * 5000,  # deeper than any JSON reader goes
        chat_line(5, "lone") | {"body": chat_line(5)["body"] | {"user": "\ud800"}},
    ]
    uploaded = sdk.files.create(file=("mixed.jsonl", jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(sdk, batch.id, finished)
    assert batch.status == "completed"
    assert batch.request_counts.completed == 1 and batch.request_counts.failed == 7
    assert [r["custom_id"] for r in output(sdk, batch.output_file_id)] == ["good"]
    errors = output(sdk, batch.error_file_id)
    assert [e["custom_id"] for e in errors] == [
        None,
        "no-body",
        "wrong-url",
        "bad-field",
        "streamed",
        None,
        "lone",
    ]
    for error in errors:
        assert error["response"]["status_code"] == 400
        assert error["response"]["body"]["error"]["type"] == "invalid_request_error"
    messages = [e["response"]["body"]["error"]["message"] for e in errors]
    assert "Line 2 is not JSON" in messages[0]
    assert "POST /v1/chat/completions" in messages[2]
    assert "messages" in messages[3]
    assert "stream" in messages[4]
    assert "Line 7 is not JSON" in messages[5]
    assert "body.user: holds a lone UTF-16 surrogate" in messages[6]


@pytest.mark.parametrize(
    ("lines", "endpoint", "purpose", "said"),
    [
        ([chat_line(1)], "/v1/embeddings", "batch",
         "endpoint: Input should be '/v1/chat/completions'"),
        ([chat_line(1, "a"), chat_line(2, "b"), chat_line(3, "a")], "/v1/chat/completions",
         "batch", "Line 3 repeats custom_id 'a' of line 1"),
        ([chat_line(1)], "/v1/chat/completions", "fine-tune", "purpose: Input should be 'batch'"),
        ([chat_line(n) for n in range(1400)], "/v1/chat/completions", "batch",
         "larger than 200,000 bytes"),  # the file is over its limit, the body not by much
        ([chat_line(n) for n in range(3000)], "/v1/chat/completions", "batch",
         "larger than 200,000 bytes"),  # refused before it is read
    ],
)  # fmt: skip
def test_a_job_that_cannot_run_is_a_400_that_says_why(
    sdk: openai.OpenAI, lines: list[Any], endpoint: str, purpose: str, said: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        uploaded = sdk.files.create(file=("in.jsonl", jsonl(lines)), purpose=purpose)  # type: ignore[arg-type]
        sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint=endpoint,  # type: ignore[arg-type]
            completion_window="24h",
        )
    assert said in refused.value.message


def test_a_job_made_from_another_jobs_output_is_refused(sdk: openai.OpenAI) -> None:
    uploaded = sdk.files.create(file=("one.jsonl", jsonl([chat_line(3)])), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(sdk, batch.id, finished)
    assert batch.output_file_id is not None
    assert sdk.files.retrieve(batch.output_file_id).purpose == "batch_output"
    with pytest.raises(openai.BadRequestError, match="uploaded for 'batch_output'"):
        sdk.batches.create(
            input_file_id=batch.output_file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )


def test_an_unknown_file_and_batch_are_404s(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.batches.create(
            input_file_id="file_nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        sdk.batches.retrieve("batch_nope")


def test_batch_quota_is_apart_and_a_line_over_it_fails_with_429(
    sdk: openai.OpenAI, server: Server
) -> None:
    lines = [
        {"custom_id": f"c{n}", "method": "POST", "url": "/v1/completions",
         "body": {"model": "codey", "prompt": f"x_{n} =", "max_tokens": 8}}
        for n in range(5)
    ]  # fmt: skip
    uploaded = sdk.files.create(file=("c.jsonl", jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h"
    )
    batch = wait_for(sdk, batch.id, finished)
    assert batch.request_counts.completed == 3 and batch.request_counts.failed == 2
    errors = output(sdk, batch.error_file_id)
    assert {e["response"]["status_code"] for e in errors} == {429}
    assert "batch completion requests" in errors[0]["response"]["body"]["error"]["message"]
    usage = httpx.get(f"{server.url}/api/v1/codey/usage").json()["services"]["completion"]
    assert usage["batch"]["remaining"] == 0 and usage["remaining"] == 1000
    # the interactive quota still answers
    assert sdk.completions.create(model="codey", prompt="y =", max_tokens=4).choices


def test_a_cached_answer_is_reused_and_costs_nothing(sdk: openai.OpenAI, server: Server) -> None:
    body = {
        "model": "codey",
        "messages": [{"role": "user", "content": "Batch question 150."}],
        "temperature": 0,
    }
    sdk.chat.completions.create(**body)  # answered interactively, now in the cache
    line = {"custom_id": "again", "method": "POST", "url": "/v1/chat/completions", "body": body}
    uploaded = sdk.files.create(file=("again.jsonl", jsonl([line])), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(sdk, batch.id, finished)
    [result] = output(sdk, batch.output_file_id)
    assert result["response"]["body"]["choices"][0]["message"]["content"] == "Answer 150."
    [row] = ledger(server, "batch = 1 AND cached = 1")
    assert row["cost_usd"] == 0 and row["backend"] == "cache"


def test_cancel_keeps_what_was_answered(sdk: openai.OpenAI) -> None:
    lines = generate_lines("g")
    uploaded = sdk.files.create(file=("gen.jsonl", jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/api/v1/codey/generate",  # type: ignore[arg-type]
        completion_window="24h",
    )
    wait_for(sdk, batch.id, lambda b: b.request_counts.completed >= 10)
    cancelling = sdk.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = wait_for(sdk, batch.id, finished)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    answered = output(sdk, batch.output_file_id)
    assert 10 <= len(answered) == batch.request_counts.completed < LINES
    assert all(answers_its_line(r, "g") for r in answered)


def test_a_job_past_its_window_expires_with_the_rest_in_its_error_file(
    sdk: openai.OpenAI, server: Server
) -> None:
    lines = generate_lines("e")
    uploaded = sdk.files.create(file=("late.jsonl", jsonl(lines)), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/api/v1/codey/generate",  # type: ignore[arg-type]
        completion_window="24h",
    )
    wait_for(sdk, batch.id, lambda b: b.request_counts.completed >= 5)
    with sqlite3.connect(server.log.parent / "codey.db") as db:  # a day goes by
        db.execute("UPDATE batches SET expires_at = 0 WHERE id = ?", [batch.id])
    batch = wait_for(sdk, batch.id, finished)
    assert batch.status == "expired" and batch.expired_at is not None
    answered, late = output(sdk, batch.output_file_id), output(sdk, batch.error_file_id)
    assert len(answered) == batch.request_counts.completed and len(answered) + len(late) == LINES
    assert {e["error"]["code"] for e in late} == {"batch_expired"}
    assert all(e["response"] is None for e in late)


def test_a_job_whose_key_was_removed_fails_and_says_why(tmp_path: Path) -> None:
    key = "team-a-key"
    keys = f'[[auth.keys]]\nname = "team-a"\nsha256 = "{hash_key(key)}"\n'
    server = batch_server(tmp_path, keys)
    try:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
        uploaded = sdk.files.create(file=("q.jsonl", jsonl(generate_lines("k"))), purpose="batch")
        batch = sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint="/api/v1/codey/generate",  # type: ignore[arg-type]
            completion_window="24h",
        )
        wait_for(sdk, batch.id, lambda b: b.request_counts.completed >= 5)
    finally:
        # Killed, so that the lines left stay left: a graceful stop under load could take
        # long enough for the runner to answer them all.
        server.stop(signal.SIGKILL)
    server = batch_server(tmp_path)  # the same database, the key gone from the config
    try:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        batch = wait_for(sdk, batch.id, finished)
        assert batch.status == "failed" and batch.failed_at is not None
        assert batch.errors is not None and batch.errors.data is not None
        assert batch.errors.data[0].code == "owner_removed"
        refused = output(sdk, batch.error_file_id)
        assert refused and {e["response"]["status_code"] for e in refused} == {403}
        assert len(refused) + batch.request_counts.completed == LINES
    finally:
        server.stop()


def test_killed_half_way_the_job_resumes_and_runs_each_line_once(
    tmp_path: Path,
) -> None:
    lines = generate_lines("g")
    server = batch_server(tmp_path)
    try:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        uploaded = sdk.files.create(file=("gen.jsonl", jsonl(lines)), purpose="batch")
        batch = sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint="/api/v1/codey/generate",  # type: ignore[arg-type]
            completion_window="24h",
        )
        half = wait_for(sdk, batch.id, lambda b: b.request_counts.completed >= LINES // 3)
        assert half.request_counts.completed < LINES
    finally:
        server.stop(signal.SIGKILL)
    server = batch_server(tmp_path)  # the same database
    try:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        batch = wait_for(sdk, batch.id, finished)
        assert batch.status == "completed"
        assert batch.request_counts.completed == LINES and batch.request_counts.failed == 0
        results = output(sdk, batch.output_file_id)
        assert sorted(r["custom_id"] for r in results) == sorted(f"g{n}" for n in range(LINES))
        assert all(answers_its_line(r, "g") for r in results)
    finally:
        server.stop()
    rows = ledger(server, "batch = 1")
    answered = [r for r in rows if r["status"] == 200]
    assert len(answered) == LINES  # each line billed once, across the kill
    assert {r["service"] for r in rows} == {"generation"}
    for row in answered:  # at the batch price
        expected = (row["input_chars"] * 0.0002 + row["output_chars"] * 0.0004) / 1000
        assert row["cost_usd"] == pytest.approx(expected) and row["cost_usd"] > 0


def test_vertex_batch_prediction_through_the_job_client(server: Server) -> None:
    client = JobServiceClient(
        transport="rest",
        client_options={"api_endpoint": server.url},
        credentials=AnonymousCredentials(),
    )
    folder = server.log.parent / "batch"
    (folder / "in").mkdir(parents=True)
    instances = [{"prefix": f"a function named batch_{n} that returns {n}"} for n in range(5)]
    deep, lone = "[" * 5000 + "]" * 5000, {"prefix": "\ud800"}
    (folder / "in" / "prompts.jsonl").write_bytes(jsonl([*instances, "[1, 2]", deep, lone]))
    parent = "projects/demo/locations/us-central1"
    job = client.create_batch_prediction_job(
        parent=parent, batch_prediction_job=prediction_job("in/prompts.jsonl", temperature=0)
    )
    assert job.name.startswith(f"{parent}/batchPredictionJobs/")
    assert job.display_name == "docstrings"
    deadline = time.monotonic() + 60
    while job.state not in (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = client.get_batch_prediction_job(name=job.name)
    assert job.state == JobState.JOB_STATE_SUCCEEDED
    assert (job.completion_stats.successful_count, job.completion_stats.failed_count) == (5, 3)
    assert job.name in [j.name for j in client.list_batch_prediction_jobs(parent=parent)]
    directory = job.output_info.gcs_output_directory
    assert directory.startswith("out/prediction-code-bison-")
    lines = (folder / directory / "predictions_00001.jsonl").read_text().splitlines()
    results = [json.loads(line) for line in lines]
    assert [r["instance"] for r in results] == [*instances, [1, 2], deep, lone]
    for n, result in enumerate(results[:5]):
        assert result["status"] == ""
        assert f"def batch_{n}():" in result["predictions"][0]["content"]
    assert "not a JSON object" in results[5]["status"] and "predictions" not in results[5]
    assert "not JSON" in results[6]["status"]
    assert "prefix: holds a lone UTF-16 surrogate" in results[7]["status"]

    for uri in ("../../etc/passwd", "/etc/passwd"):
        with pytest.raises(google_errors.BadRequest, match="outside"):
            client.create_batch_prediction_job(
                parent=parent, batch_prediction_job=prediction_job(uri)
            )
    with pytest.raises(google_errors.BadRequest, match="no bucket"):
        client.create_batch_prediction_job(
            parent=parent, batch_prediction_job=prediction_job("gs://team/prompts.jsonl")
        )


def prediction_job(uri: str, **parameters: Any) -> BatchPredictionJob:
    """A code-bison job on one input file, its output under out/."""
    return BatchPredictionJob(
        display_name="docstrings",
        model="publishers/google/models/code-bison",
        input_config=BatchPredictionJob.InputConfig(
            instances_format="jsonl", gcs_source=GcsSource(uris=[uri])
        ),
        output_config=BatchPredictionJob.OutputConfig(
            predictions_format="jsonl", gcs_destination=GcsDestination(output_uri_prefix="out")
        ),
        model_parameters=json_format.ParseDict(parameters, struct_pb2.Value()),
    )


def test_the_cli_submits_waits_and_fetches_results(server: Server, tmp_path: Path) -> None:
    requests = tmp_path / "gen.jsonl"
    requests.write_bytes(
        jsonl(generate_lines("cli", 12))
    )  # fmt: skip
    url = ["--url", server.url]
    submitted = codey("batch", "submit", str(requests), "--endpoint", "/api/v1/codey/generate",
                      "--wait", "--json", *url)  # fmt: skip
    job = json.loads(submitted.stdout)
    assert job["status"] == "completed" and job["request_counts"]["completed"] == 12
    results = codey("batch", "results", job["id"], *url).stdout.splitlines()
    assert sorted(json.loads(r)["custom_id"] for r in results) == sorted(
        f"cli{n}" for n in range(12)
    )
    listed = codey("batch", "list", *url).stdout
    assert job["id"][:20] in listed and "completed" in listed
    status = codey("batch", "status", job["id"], *url).stdout
    assert "12 done, 0 failed, of 12" in status

    database = str(server.log.parent / "codey.db")
    usage = json.loads(codey("usage", "--json", CODEY_STORE__SQLITE_PATH=database).stdout)
    [generation] = [r for r in usage if r["service"] == "generation" and r["batch"]]
    assert generation["succeeded"] >= 12 and generation["quota"] == 10_000
    table = codey("usage", CODEY_STORE__SQLITE_PATH=database).stdout
    assert "generation (batch)" in table

    unknown = codey("batch", "status", "batch_nope", *url, check=False)
    assert unknown.returncode == 1 and "No such batch" in unknown.stderr
    nobody = codey("batch", "list", "--url", "http://127.0.0.1:9", check=False)
    assert nobody.returncode == 1 and "codey serve" in nobody.stderr


def codey(*args: str, check: bool = True, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEY_")}
    env |= {"COLUMNS": "160", **settings}
    run = subprocess.run(
        [sys.executable, "-m", "codey", *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check and run.returncode != 0:
        pytest.fail(f"codey {' '.join(args)} exited {run.returncode}:\n{run.stderr}")
    return run


def test_the_dashboard_lists_the_jobs_with_their_progress(
    server: Server, sdk: openai.OpenAI, browser: webdriver.Chrome
) -> None:
    uploaded = sdk.files.create(file=("one.jsonl", jsonl([chat_line(7)])), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_for(sdk, batch.id, finished)
    jobs = httpx.get(f"{server.url}/api/v1/codey/stats").json()["batches"]
    usage = httpx.get(f"{server.url}/api/v1/codey/usage").json()["services"]
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(ready.presence_of_element_located((By.ID, f"batch-{batch.id}")))
    for job in jobs:
        cells = browser.find_element(By.ID, f"batch-{job['id']}").find_elements(By.TAG_NAME, "td")
        assert [c.text for c in cells[:4]] == [
            job["id"],
            job["api"],
            job["endpoint"],
            job["status"],
        ]
        shown = [int(c.text.replace(",", "")) for c in cells[5:8]]
        assert shown == [job["completed"], job["failed"], job["total"]]
        width = cells[4].find_element(By.CSS_SELECTOR, ".bar > div").get_attribute("style")
        settled = 100 * (job["completed"] + job["failed"]) / job["total"]
        assert f"width: {settled:g}%" in (width or ""), width
    chat = browser.find_element(By.ID, "usage-chat-batch").text
    assert chat.replace(",", "") == f"{usage['chat']['batch']['requests']} / 10000"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-batches.png"))


def test_a_wrong_method_is_told_every_method_of_the_path(server: Server) -> None:
    response = httpx.put(f"{server.url}/v1/batches")
    assert response.status_code == 405
    assert {"GET", "POST"} <= set(response.headers["allow"].split(", "))
    # the most specific template answers: `{job_id}:cancel`, not `{job_id}`
    path = "/v1/projects/p/locations/l/batchPredictionJobs/1:cancel"
    cancel = httpx.request("OPTIONS", server.url + path)
    assert cancel.status_code == 405 and cancel.headers["allow"] == "POST"


def test_replicas_sharing_redis_share_jobs_and_one_resumes_the_others(tmp_path: Path) -> None:
    shared = {"CODEY_REDIS_URL": "redis://127.0.0.1:6379/0", "CODEY_BATCH__LEASE_SECONDS": "3"}
    lines = generate_lines("r")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = batch_server(tmp_path / "a", **shared)
    second = batch_server(tmp_path / "b", **shared)
    try:
        sdk = openai.OpenAI(base_url=f"{first.url}/v1", api_key="unused", max_retries=0)
        other = openai.OpenAI(base_url=f"{second.url}/v1", api_key="unused", max_retries=0)
        uploaded = sdk.files.create(file=("shared.jsonl", jsonl(lines)), purpose="batch")
        assert other.files.retrieve(uploaded.id).bytes == uploaded.bytes
        batch = sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint="/api/v1/codey/generate",  # type: ignore[arg-type]
            completion_window="24h",
        )
        wait_for(other, batch.id, lambda b: b.request_counts.completed >= LINES // 3)
        first.stop(signal.SIGKILL)  # its lines in flight are the other's once their lease ends
        batch = wait_for(other, batch.id, finished)
        assert batch.status == "completed"
        assert batch.request_counts.completed == LINES and batch.request_counts.failed == 0
        results = output(other, batch.output_file_id)
        assert sorted(r["custom_id"] for r in results) == sorted(f"r{n}" for n in range(LINES))
        assert all(answers_its_line(r, "r") for r in results)
    finally:
        first.stop()
        second.stop()
    answered_by = [len(ledger(server, "batch = 1 AND status = 200")) for server in (first, second)]
    assert all(answered_by), answered_by  # both replicas ran lines
    # Each line's result is written once. Its ledger row goes to its replica's own SQLite, a
    # second write: a replica killed between the two may leave a line with a row too few or,
    # run again by the other, one too many; at most the lines it had in flight.
    assert abs(sum(answered_by) - LINES) <= 8, answered_by


def test_a_replica_with_its_hands_full_takes_no_line_it_cannot_run(tmp_path: Path) -> None:
    # Shared mode, long leases: a line taken and left would wait out its lease (600 s).
    server = batch_server(
        tmp_path, CODEY_REDIS_URL="redis://127.0.0.1:6379/0", CODEY_BATCH__CONCURRENCY="2"
    )
    try:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        uploaded = sdk.files.create(
            file=("few.jsonl", jsonl(generate_lines("h", 30))), purpose="batch"
        )
        batch = sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint="/api/v1/codey/generate",  # type: ignore[arg-type]
            completion_window="24h",
        )
        batch = wait_for(sdk, batch.id, finished, timeout=60)
        assert batch.request_counts.completed == 30
        assert all(answers_its_line(r, "h") for r in output(sdk, batch.output_file_id))
    finally:
        server.stop()
